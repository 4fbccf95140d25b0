package pebbletest_test

// Tests of the pebble harness itself, driving raw certmagic with real
// challenge validation (AlwaysValid false), so that a later failure in
// the manager's tests points at the manager and not at the rig.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/duo-confidential/duo-confidential/tls/pebbletest"
)

// acmeDeadline bounds each ACME operation so a broken rig fails, not hangs.
const acmeDeadline = 60 * time.Second

// newPebbleConfig returns a certmagic config whose only issuer is p,
// with tmpl's challenge settings; CA, trust, account and logging are filled in.
func newPebbleConfig(t *testing.T, p *pebbletest.CA, tmpl certmagic.ACMEIssuer) (*certmagic.Config, *certmagic.Cache) {
	t.Helper()
	// Made before the cache so its removal runs after cache.Stop (cleanups are LIFO).
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           zap.NewNop(),
	})
	t.Cleanup(cache.Stop)
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: storage,
		Logger:  zap.NewNop(),
		// pebble intermittently fails renewal orders that name the
		// certificate they replace (ARI); see pebbletest's doc.
		DisableARI: true,
	})
	tmpl.CA = p.Directory
	tmpl.TrustedRoots = p.Roots
	tmpl.Email = "ops@example.internal" // empty would prompt on stdin
	tmpl.Agreed = true
	tmpl.ListenHost = p.ChallengeIP
	tmpl.Logger = zap.NewNop()
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, tmpl)}
	return cfg, cache
}

// tlsALPNTemplate makes certmagic solve only tls-alpn-01, on p's port, where
// serveManaged's listener already sits: the solver's bind then fails with
// "address in use" and certmagic relies on that listener's GetCertificate.
func tlsALPNTemplate(p *pebbletest.CA) certmagic.ACMEIssuer {
	return certmagic.ACMEIssuer{DisableHTTPChallenge: true, AltTLSALPNPort: p.TLSALPNPort}
}

// httpTemplate makes certmagic solve only http-01 with its own solver listener.
func httpTemplate(p *pebbletest.CA) certmagic.ACMEIssuer {
	return certmagic.ACMEIssuer{DisableTLSALPNChallenge: true, AltHTTPPort: p.HTTPPort}
}

// serveManaged serves cfg's certificates with fasthttp on p's TLS-ALPN port,
// the way the appliance's listeners will.
func serveManaged(t *testing.T, p *pebbletest.CA, cfg *certmagic.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", p.ChallengeAddr(p.TLSALPNPort))
	if err != nil {
		t.Fatalf("listen for managed TLS: %v", err)
	}
	tc := cfg.TLSConfig()
	tc.NextProtos = append([]string{"http/1.1"}, tc.NextProtos...)
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) { c.SetBodyString("ok") },
		Logger:  discardLogger{},
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, tc)) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("shut down managed TLS server: %v", err)
		}
		<-done
	})
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// fetchLeaf GETs https://localhost:<port>/ trusting only pebble's issued root,
// on a fresh connection, and returns the served leaf after checking the
// chain ends in that root.
func fetchLeaf(t *testing.T, p *pebbletest.CA, port int) *x509.Certificate {
	t.Helper()
	client := &http.Client{
		Timeout: acmeDeadline,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: p.IssuedRoots},
			DisableKeepAlives: true,
		},
	}
	url := "https://" + net.JoinHostPort("localhost", strconv.Itoa(port)) + "/"
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	chain := resp.TLS.VerifiedChains[0]
	if !chain[len(chain)-1].Equal(p.Root) {
		t.Fatalf("served chain ends in %q, want pebble's root %q",
			chain[len(chain)-1].Subject, p.Root.Subject)
	}
	return resp.TLS.PeerCertificates[0]
}

// manage obtains a certificate for localhost, bounded by acmeDeadline.
func manage(t *testing.T, cfg *certmagic.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), acmeDeadline)
	defer cancel()
	return cfg.ManageSync(ctx, []string{"localhost"})
}

func TestPebbleTLSALPN01(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	cfg, _ := newPebbleConfig(t, p, tlsALPNTemplate(p))
	serveManaged(t, p, cfg)
	if err := manage(t, cfg); err != nil {
		t.Fatalf("ManageSync via tls-alpn-01: %v", err)
	}
	leaf := fetchLeaf(t, p, p.TLSALPNPort)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("leaf DNS names %v, want [localhost]", leaf.DNSNames)
	}
}

// cachedLeaf returns the one certificate cache holds for localhost,
// verified against pebble's issued root through the chain it came with.
func cachedLeaf(t *testing.T, p *pebbletest.CA, cache *certmagic.Cache) *x509.Certificate {
	t.Helper()
	certs := cache.AllMatchingCertificates("localhost")
	if len(certs) != 1 {
		t.Fatalf("cache holds %d certificates for localhost, want 1", len(certs))
	}
	inter := x509.NewCertPool()
	for _, der := range certs[0].Certificate.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parse cached chain: %v", err)
		}
		inter.AddCert(c)
	}
	leaf := certs[0].Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: p.IssuedRoots, Intermediates: inter}); err != nil {
		t.Fatalf("cached certificate does not chain to pebble's root: %v", err)
	}
	return leaf
}

func TestPebbleHTTP01(t *testing.T) {
	const validity = 24 * time.Hour
	p := pebbletest.Start(t, pebbletest.Options{ValidityPeriod: validity})
	cfg, cache := newPebbleConfig(t, p, httpTemplate(p))
	if err := manage(t, cfg); err != nil {
		t.Fatalf("ManageSync via http-01: %v", err)
	}
	leaf := cachedLeaf(t, p, cache)
	// Pebble's NotAfter is NotBefore + period - 1 s; allow a minute either way.
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < validity-time.Minute || got > validity+time.Minute {
		t.Errorf("certificate lifetime %v, want about %v (ValidityPeriod)", got, validity)
	}
}

func TestPebbleExternalAccountBinding(t *testing.T) {
	good := pebbletest.NewMACKey(t)
	p := pebbletest.Start(t, pebbletest.Options{RequireEAB: true, EAB: map[string]string{"kid-1": good}})
	tests := []struct {
		name string
		eab  *acme.EAB
		// wantType and wantDetail identify the CA's refusal; empty: success.
		wantType, wantDetail string
	}{
		{name: "registered key", eab: &acme.EAB{KeyID: "kid-1", MACKey: good}},
		{
			name: "wrong MAC key", eab: &acme.EAB{KeyID: "kid-1", MACKey: pebbletest.NewMACKey(t)},
			wantType: acme.ProblemTypeUnauthorized, wantDetail: "external account binding",
		},
		{
			name: "unknown key ID", eab: &acme.EAB{KeyID: "kid-2", MACKey: good},
			wantType: acme.ProblemTypeUnauthorized, wantDetail: "not known",
		},
		{
			name:     "no binding",
			wantType: acme.ProblemTypeExternalAccountRequired, wantDetail: "externalAccountBinding",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := httpTemplate(p)
			tmpl.ExternalAccount = tt.eab
			cfg, _ := newPebbleConfig(t, p, tmpl)
			err := manage(t, cfg)
			if tt.wantType == "" {
				if err != nil {
					t.Fatalf("ManageSync with a registered EAB key: %v", err)
				}
				return
			}
			var prob acme.Problem
			if !errors.As(err, &prob) {
				t.Fatalf("ManageSync error %v, want an ACME problem %s", err, tt.wantType)
			}
			if prob.Type != tt.wantType || !strings.Contains(prob.Detail, tt.wantDetail) {
				t.Errorf("problem %q %q, want type %q with detail containing %q",
					prob.Type, prob.Detail, tt.wantType, tt.wantDetail)
			}
		})
	}
}

func TestPebbleFailingCA(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	cfg, cache := newPebbleConfig(t, p, tlsALPNTemplate(p))
	serveManaged(t, p, cfg)
	if err := manage(t, cfg); err != nil {
		t.Fatalf("ManageSync via tls-alpn-01: %v", err)
	}
	first := fetchLeaf(t, p, p.TLSALPNPort)

	renew := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), acmeDeadline)
		defer cancel()
		return cfg.RenewCertSync(ctx, "localhost", true)
	}

	p.Fail(true)
	err := renew()
	// The first request of a renewal is a HEAD for a nonce, which carries
	// no problem document, so the status in the text is what is stable.
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("renewal against a failing CA: error %v, want one reporting HTTP 503", err)
	}
	if got := fetchLeaf(t, p, p.TLSALPNPort); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("after a failed renewal the listener serves serial %x, want the old %x", got.SerialNumber, first.SerialNumber)
	}

	p.Fail(false)
	if err := renew(); err != nil {
		t.Fatalf("renewal after the CA recovered: %v", err)
	}
	// RenewCertSync only writes storage; swap the cached certificate the
	// way a manager must, then the listener serves the renewed one.
	old := cache.AllMatchingCertificates("localhost")
	if _, err := cfg.CacheManagedCertificate(t.Context(), "localhost"); err != nil {
		t.Fatalf("load renewed certificate into the cache: %v", err)
	}
	for _, c := range old {
		cache.Remove([]string{c.Hash()})
	}
	renewed := fetchLeaf(t, p, p.TLSALPNPort)
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("after a successful renewal the listener still serves serial %x", first.SerialNumber)
	}
	if got := cachedLeaf(t, p, cache); got.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("cache holds serial %x, listener serves %x", got.SerialNumber, renewed.SerialNumber)
	}
}
