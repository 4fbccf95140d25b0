package tls

import (
	"context"
	stdtls "crypto/tls"
	"fmt"
	"github.com/duo-confidential/duo-confidential/tls/pebbletest"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// acmeManager starts a Manager against p, for localhost, whose listener
// holds p's TLS-ALPN port so it answers the challenge itself (certmagic's
// solver finds the port taken). It returns the manager and that port.
func acmeManager(t *testing.T, p *pebbletest.CA, tune func(*Options)) (*Manager, string) {
	t.Helper()
	ln, err := net.Listen("tcp", p.ChallengeAddr(p.TLSALPNPort))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Source: SourceACME,
		Names:  []string{"localhost"},
		ACME: ACMEOptions{
			Directory:      p.Directory,
			Email:          "ops@example.internal",
			AgreeTerms:     true,
			Roots:          p.Roots,
			Challenges:     []string{ChallengeTLSALPN01},
			ListenHost:     p.ChallengeIP,
			AltTLSALPNPort: p.TLSALPNPort,
		},
	}
	if tune != nil {
		tune(&o)
	}
	m, _ := startManager(t, o)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, Logger: discardLogger{}}
	go func() { _ = srv.Serve(m.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	waitReady(t, m)
	return m, fmt.Sprint(p.TLSALPNPort)
}

// waitReady waits (bounded) for the background ACME issuance.
func waitReady(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(acmeDeadline)
	for {
		ok, reason := m.Ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from ACME: %s", reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACMEIssueRenewAndFailingCA drives the Manager against pebble with
// real TLS-ALPN-01 validation answered by our own listener: issuance,
// forced renewal, and a failing CA whose error surfaces in Status while
// the old certificate keeps serving.
func TestACMEIssueRenewAndFailingCA(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	m, port := acmeManager(t, p, nil)
	url := "https://localhost:" + port + "/"
	tc := &stdtls.Config{RootCAs: p.IssuedRoots}
	first, err := getVia(tc, url)
	if err != nil {
		t.Fatalf("GET after issuance: %v", err)
	}
	if !first.Equal(first) || first.Issuer.CommonName == "" || !strings.Contains(first.Issuer.CommonName, "Pebble") {
		t.Errorf("issuer = %q, want pebble's", first.Issuer.CommonName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), acmeDeadline)
	defer cancel()

	if err := m.Renew(ctx, true); err != nil {
		t.Fatalf("renew: %v", err)
	}
	renewed, err := getVia(tc, url)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("the listener still serves the certificate from before the renewal")
	}

	p.Fail(true)
	if err := m.Renew(ctx, true); err == nil {
		t.Fatal("renewal against a failing CA succeeded")
	}
	st := m.Status()
	if !st.Ready || len(st.Certificates) != 1 || !strings.Contains(st.Certificates[0].LastError, "503") {
		t.Fatalf("status after a failed renewal = %+v, want ready with the renewal error", st)
	}
	still, err := getVia(tc, url)
	if err != nil {
		t.Fatalf("GET while the CA fails: %v", err)
	}
	if still.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Error("a failed renewal replaced the served certificate")
	}
	p.Fail(false)
	if err := m.Renew(ctx, true); err != nil {
		t.Fatalf("renew after the CA recovered: %v", err)
	}
	if st := m.Status(); st.Certificates[0].LastError != "" {
		t.Errorf("the renewal error is not cleared by a success: %+v", st.Certificates[0])
	}
}

// TestACMEExternalAccountBinding: a private CA that requires EAB issues
// with the right key and reports the wrong one in Ready's reason.
func TestACMEExternalAccountBinding(t *testing.T) {
	mac := pebbletest.NewMACKey(t)
	p := pebbletest.Start(t, pebbletest.Options{RequireEAB: true, EAB: map[string]string{"duo-appliance": mac}})
	acmeManager(t, p, func(o *Options) { o.ACME.EAB = &EAB{KeyID: "duo-appliance", MACKey: mac} })

	bad := pebbletest.Start(t, pebbletest.Options{RequireEAB: true, EAB: map[string]string{"duo-appliance": mac}})
	o := Options{Source: SourceACME, Names: []string{"localhost"}, ACME: ACMEOptions{
		Directory: bad.Directory, Email: "ops@example.internal", AgreeTerms: true, Roots: bad.Roots,
		Challenges: []string{ChallengeTLSALPN01}, ListenHost: bad.ChallengeIP, AltTLSALPNPort: bad.TLSALPNPort,
		EAB: &EAB{KeyID: "duo-appliance", MACKey: pebbletest.NewMACKey(t)},
	}}
	m, _ := startManager(t, o)
	deadline := time.Now().Add(acmeDeadline)
	for {
		ok, reason := m.Ready()
		if ok {
			t.Fatal("issued with a wrong EAB MAC key")
		}
		if strings.Contains(reason, "external account") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reason = %q, want the EAB failure", reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACMEHTTP01 issues through certmagic's own HTTP-01 solver.
func TestACMEHTTP01(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	m, _ := startManager(t, Options{Source: SourceACME, Names: []string{"localhost"}, ACME: ACMEOptions{
		Directory: p.Directory, Email: "ops@example.internal", AgreeTerms: true, Roots: p.Roots,
		Challenges: []string{ChallengeHTTP01}, ListenHost: p.ChallengeIP, AltHTTPPort: p.HTTPPort,
	}})
	waitReady(t, m)
	if st := m.Status(); len(st.Certificates) != 1 || !strings.Contains(st.Certificates[0].Issuer, "Pebble") {
		t.Errorf("status = %+v", st)
	}
}
