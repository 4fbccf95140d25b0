package ui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/jwks"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
)

// testPassword and testToken are the fixture's secrets; no page may show
// them.
const (
	testPassword = "correct horse battery staple"
	testToken    = "dc_admin-token-for-tests-0123456789abcdef"
)

// t0 is the fixture's clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a Server over fake sources with fixed times.
type fixture struct {
	t     *testing.T
	srv   *Server
	base  string
	store *keys.Store
	reg   *prometheus.Registry
	in    *Instruments
	clock *testutil.Clock
}

type fixtureOptions struct {
	networks   []netip.Prefix
	metricsOff bool // MetricsAuthNone
	noPassword bool
	sources    func(*Sources) // changes the fake sources before New
}

func newFixture(t *testing.T, fo fixtureOptions) *fixture {
	t.Helper()
	dir := t.TempDir()
	store, err := keys.Open(filepath.Join(dir, statedir.KeysDir), keys.Options{Bits: keys.MinBits, Now: func() time.Time { return t0.Add(-48 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, statedir.AdminPasswordFile)
	if !fo.noPassword {
		if err := WritePasswordFile(pw, []byte(testPassword), 4); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, store: store, reg: prometheus.NewRegistry(), clock: testutil.NewClock(t0)}
	if f.in, err = NewInstruments(f.reg); err != nil {
		t.Fatal(err)
	}
	auth := MetricsAuthToken
	if fo.metricsOff {
		auth = MetricsAuthNone
	}
	src := fixtureSources(store)
	if fo.sources != nil {
		fo.sources(&src)
	}
	o := Options{
		Sources: src, Registry: f.reg, PasswordFile: pw,
		TokenSHA256: []string{digest(testToken)}, AllowedNetworks: fo.networks, MetricsAuth: auth,
		Now: f.clock.Now,
	}
	if f.srv, err = New(o); err != nil {
		t.Fatal(err)
	}
	f.base = "http://" + testutil.ServeLoopback(t, f.srv.Serve, f.srv.Shutdown)
	return f
}

// fixtureSources is an attested TDX backend, a gateway with GitLab's keys
// loaded and TLS served from an internal CA.
func fixtureSources(store *keys.Store) Sources {
	res := &attest.Result{
		Platform: attest.PlatformTDX, Verdict: attest.VerdictAccepted, VerifiedAt: t0.Add(-10 * time.Minute),
		EvidenceSHA256: strings.Repeat("e", 64), ManifestSHA256: strings.Repeat("a", 64), PolicyHash: strings.Repeat("c", 64), Product: "00806F050000",
		Measurements:  []attest.Measurement{{Name: "MRTD", Actual: strings.Repeat("1", 96), Expected: strings.Repeat("1", 96), Match: true}},
		TCB:           []attest.TCBComponent{{Name: "TDX TCB", Actual: "3", Minimum: "3", Status: "UpToDate"}},
		TCBStatus:     "SWHardeningNeeded",
		TCBAdvisories: []string{"INTEL-SA-00615"},
		TCBAcceptedBy: "TDX TCB level: status SWHardeningNeeded accepted by operator policy",
		Collateral: []attest.CollateralUse{{Name: "TDX TCB info", Source: "bundle", IssueDate: t0.Add(-72 * time.Hour), NextUpdate: t0.Add(27 * 24 * time.Hour)},
			{Name: "PCK CRL", Source: "online", FetchedAt: t0.Add(-time.Hour), NextUpdate: t0.Add(-time.Minute)}},
		Checks: []attest.Check{{Name: "quote signature", OK: true}, {Name: "report data binding", OK: true}},
	}
	st := &secret.Status{Ready: true, Attestation: res, LastAttestedAt: t0.Add(-10 * time.Minute), NextAttestationAt: t0.Add(50 * time.Minute),
		SecretID: "a1b2c3d4", SecretCreatedAt: t0.Add(-5 * time.Minute), SecretExpiresAt: t0.Add(40 * time.Minute), Rotations: 2, AttestationFailures: 1}
	entries := []attest.TrustEntry{
		{Seq: 1, Time: t0.Add(-24 * time.Hour), Platform: attest.PlatformTDX, ManifestSHA256: strings.Repeat("b", 64), EvidenceSHA256: strings.Repeat("d", 64), TCBStatus: "UpToDate", Verdict: attest.VerdictAccepted, Hash: strings.Repeat("1", 64)},
		{Seq: 2, Time: t0.Add(-10 * time.Minute), Platform: attest.PlatformTDX, ManifestSHA256: strings.Repeat("a", 64), EvidenceSHA256: strings.Repeat("e", 64), TCBStatus: "UpToDate", Verdict: attest.VerdictAccepted, Prev: strings.Repeat("1", 64), Hash: strings.Repeat("2", 64)},
	}
	return Sources{
		Version: "v1.2.3-test",
		Replica: "duo-0",
		Notice:  "SANDBOX MODE: local sandbox backend with test-signed evidence, NOT CONFIDENTIAL",
		Ready:   func() (bool, string) { return true, "" },
		Trust:   func() *secret.Status { c := *st; return &c },
		GatewayReady: func() (bool, string) {
			return true, ""
		},
		GitLabKeys: func() *jwks.Status {
			return &jwks.Status{Ready: true, KeyCount: 2, JWKSURI: "https://gitlab.example.com/oauth/discovery/keys",
				LastFetch: t0.Add(-time.Minute), LastSuccess: t0.Add(-time.Minute), NextFetch: t0.Add(time.Hour), Fetches: 3, Failures: 1}
		},
		Keys: func() *keys.Store { return store },
		TrustLog: func() (string, []attest.TrustEntry, error) {
			return "/var/lib/duo-confidential/trust-log.jsonl", entries, nil
		},
		TLS: func() TLSState {
			return TLSState{Source: "internal", Ready: true, Certificates: []CertState{{Names: []string{"duo.example.com", "10.0.0.5"}, Source: "internal", Issuer: "duo-confidential internal CA", ExpiresSoon: true,
				NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(6 * 24 * time.Hour), LastRenewalAt: t0.Add(-24 * time.Hour)}}}
		},
		Setup: func() Setup {
			return Setup{GatewayEnabled: true, GitLabURL: "https://gitlab.example.com", ServiceName: "gitlab-ai-gateway",
				GatewayListen: "0.0.0.0:5052", ProxyListen: "127.0.0.1:8080", ProxyTokens: false,
				Models:      SetupModels{Default: "chat-large", CodeCompletions: "code-small", CodeGenerations: "code-small", DuoChat: "chat-large"},
				ChatTimeout: time.Minute, CheckTimeout: 2500 * time.Millisecond,
				AgentPlatformListen: "0.0.0.0:50052", AgentContextWindow: 32768, HTTPS: true}
		},
		TestConnection: func(context.Context) (string, time.Duration, error) {
			return "chat-large", 0, errors.New("test fixture: no model")
		},
	}
}

// client is a browser-like HTTP client: cookies kept, redirects not
// followed.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) do(c *http.Client, method, path string, form url.Values, hdr ...string) resp {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, f.base+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := c.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, string(b)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf extracts the CSRF token of a rendered form.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in %s", body)
	}
	return m[1]
}

// login signs a new client in and returns it.
func (f *fixture) login(secret string) *http.Client {
	f.t.Helper()
	c := f.client()
	r := f.do(c, http.MethodGet, "/login", nil)
	r = f.do(c, http.MethodPost, "/login", url.Values{"csrf": {csrf(f.t, r.body)}, "password": {secret}, "next": {"/admin/"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/admin/" {
		f.t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	return c
}

func digest(tok string) string {
	return mustDigest(tok)
}

func mustDigest(tok string) string {
	return bearer.Digest(tok)
}

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
