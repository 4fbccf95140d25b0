// Package pebbletest runs an in-process pebble ACME CA for tests. Only
// tests import it, so pebble never reaches the appliance binary.
//
// The WFE serves HTTPS on a 127.0.0.1 httptest server, and the VA validates challenges for real
// (unless AlwaysValid) by dialing the identifier's host on loopback.
//
// Name resolution: the VA resolves identifiers with net.DefaultResolver
// and dials only the FIRST address returned. For "localhost" that is
// whatever /etc/hosts lists first (Go's resolver reads the hosts file
// in order; a cgo getaddrinfo resolver may sort ::1 first instead).
// Start resolves "localhost" the same way and records the result
// in ChallengeIP; anything that must answer a challenge (our listener,
// or certmagic's own solver via ACMEIssuer.ListenHost) must bind
// ChallengeIP, not a hard-coded 127.0.0.1, or validation fails with a
// connection refused on hosts where localhost maps to ::1 first. A
// first address that is not loopback fails the test rather than let
// the VA dial off-host.
//
// Pebble quirks the harness neutralises, because they make tests flaky:
//   - the WFE rejects 5% of good nonces by default (PEBBLE_WFE_NONCEREJECT=0);
//   - it reuses a valid authorization 50% of the time, so a renewal may or
//     may not revalidate (PEBBLE_AUTHZREUSE=0: every order validates);
//   - the VA sleeps 0-5 s before each validation (PEBBLE_VA_NOSLEEP=1).
//
// Not neutralised here: pebble intermittently refuses a renewal order
// whose "replaces" field (ACME Renewal Information) names the old
// certificate ("could not find an order for the given certificate serial
// number"). Renewal tests disable ARI on the client side.
//
// These are read from the environment once, in va.New/wfe.New, so they are
// set with t.Setenv; a test calling Start cannot use t.Parallel.
// va.New starts a task goroutine that pebble never stops: one idle
// goroutine leaks per Start.
package pebbletest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pebbleca "github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	pebbleva "github.com/letsencrypt/pebble/v2/va"
	pebblewfe "github.com/letsencrypt/pebble/v2/wfe"
)

// Options configures one Start instance.
type Options struct {
	// HTTPPort and TLSALPNPort are the ports the VA connects to on the
	// identifier's host for http-01 / tls-alpn-01; 0 picks a free port.
	HTTPPort, TLSALPNPort int
	// RequireEAB makes newAccount fail without an external account binding.
	RequireEAB bool
	// EAB maps key IDs to base64url (unpadded) MAC keys known to the CA.
	EAB map[string]string
	// ValidityPeriod is the issued-certificate lifetime (0 = pebble's 90 days;
	// pebble counts whole seconds, so anything shorter becomes 1 s).
	ValidityPeriod time.Duration
	// AlwaysValid skips challenge validation (PEBBLE_VA_ALWAYS_VALID).
	AlwaysValid bool
}

// CA is a running pebble instance; its fields are read-only.
type CA struct {
	// Directory is the https URL of the ACME directory (ends in /dir).
	Directory string
	// Roots trusts the ACME server's own TLS certificate (ACMEIssuer.TrustedRoots).
	Roots *x509.CertPool
	// ServerCertPEM is that certificate, for a CA bundle file.
	ServerCertPEM []byte
	// IssuedRoots trusts the certificates pebble issues.
	IssuedRoots *x509.CertPool
	// Root is the root that IssuedRoots holds.
	Root *x509.Certificate
	// HTTPPort and TLSALPNPort are the ports the VA dials (after 0 was resolved).
	HTTPPort, TLSALPNPort int
	// ChallengeIP is the loopback address the VA dials for "localhost".
	ChallengeIP string

	failing atomic.Bool
}

// pebbleFailBody is an RFC 7807 problem so acmez reports it as an
// acme.Problem (status 503, serverInternal) rather than an opaque body;
// either way the error text contains "HTTP 503".
const pebbleFailBody = `{"type":"urn:ietf:params:acme:error:serverInternal",` +
	`"detail":"test CA is failing on purpose","status":503}`

// Start runs pebble on loopback until the test ends.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	// Set explicitly either way so an outer environment cannot leak in.
	alwaysValid := "0"
	if o.AlwaysValid {
		alwaysValid = "1"
	}
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", alwaysValid)

	p := &CA{
		HTTPPort:    o.HTTPPort,
		TLSALPNPort: o.TLSALPNPort,
		ChallengeIP: localhostChallengeIP(t),
	}
	if p.HTTPPort == 0 {
		p.HTTPPort = FreePort(t)
	}
	if p.TLSALPNPort == 0 {
		p.TLSALPNPort = FreePort(t)
	}

	lg := pebbleLogger(t)
	store := pebbledb.NewMemoryStore()
	for keyID, mac := range o.EAB {
		if err := store.AddExternalAccountKeyByID(keyID, mac); err != nil {
			t.Fatalf("register EAB key %q: %v", keyID, err)
		}
	}
	profile := pebbleca.Profile{Description: "test default"}
	if o.ValidityPeriod > 0 {
		profile.ValidityPeriod = max(uint64(o.ValidityPeriod/time.Second), 1)
	}
	c := pebbleca.New(lg, store, "", "ecdsa", 0, 1, map[string]pebbleca.Profile{"default": profile})
	v := pebbleva.New(lg, p.HTTPPort, p.TLSALPNPort, false, "", store)
	w := pebblewfe.New(lg, store, v, c, []string{"pebble.letsencrypt.org"}, false, o.RequireEAB, 0, 0)

	root := c.GetRootCert(0)
	if root == nil || root.Cert == nil {
		t.Fatal("pebble has no root certificate")
	}
	p.Root = root.Cert
	p.IssuedRoots = x509.NewCertPool()
	p.IssuedRoots.AddCert(root.Cert)

	srv := httptest.NewUnstartedServer(p.failable(w.Handler()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for pebble WFE: %v", err)
	}
	srv.Listener = ln
	srv.Config.ErrorLog = lg
	srv.StartTLS()
	t.Cleanup(srv.Close)

	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(srv.Certificate())
	p.ServerCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	p.Directory = srv.URL + pebblewfe.DirectoryPath
	return p
}

// Fail makes every ACME request get HTTP 503 while on; off restores service.
func (p *CA) Fail(on bool) { p.failing.Store(on) }

// ChallengeAddr is host:port on ChallengeIP, where a challenge responder must listen.
func (p *CA) ChallengeAddr(port int) string {
	return net.JoinHostPort(p.ChallengeIP, strconv.Itoa(port))
}

func (p *CA) failable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.failing.Load() {
			// A HEAD (acmez's newNonce) cannot carry the problem body, and
			// acmez rejects a problem+json type with an empty body, so it gets
			// a bare 503; acmez then reports "HTTP 503: " instead of a Problem.
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, pebbleFailBody)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// NewMACKey returns a random EAB MAC key in the encoding pebble and acmez expect.
func NewMACKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("generate MAC key: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// localhostChallengeIP resolves "localhost" exactly as pebble's VA does
// (system resolver, first answer), so listeners bind where the VA dials.
func localhostChallengeIP(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, "localhost")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolve localhost as pebble's VA would: %v (addrs %v)", err, addrs)
	}
	ip := net.ParseIP(addrs[0])
	if ip == nil || !ip.IsLoopback() {
		t.Fatalf("localhost resolves first to %q, not loopback; pebble's VA would dial it", addrs[0])
	}
	return ip.String()
}

// pebbleLogger discards pebble's chatter unless -v, then routes it to t.Log.
func pebbleLogger(t testing.TB) *log.Logger {
	if !testing.Verbose() {
		return log.New(io.Discard, "", 0)
	}
	w := &testLogWriter{t: t}
	// Registered before any server starts, so it runs after they stop;
	// VA goroutines can outlive the test, and t.Log then would panic.
	t.Cleanup(w.close)
	return log.New(w, "pebble ", log.Lmicroseconds)
}

// testLogWriter forwards to t.Log until the test's cleanup closes it.
type testLogWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testLogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(string(b))
	}
	return len(b), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
