package pebbletest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	apptls "github.com/duo-confidential/duo-confidential/tls"
	"github.com/duo-confidential/duo-confidential/tls/pebbletest"
)

// acmeManager starts a apptls.Manager against p, for localhost, whose listener
// holds p's TLS-ALPN port so it answers the challenge itself (certmagic's
// solver finds the port taken). It returns the manager and that port.
func acmeManager(t *testing.T, p *pebbletest.CA, tune func(*apptls.Options)) (*apptls.Manager, string) {
	t.Helper()
	ln, err := net.Listen("tcp", p.ChallengeAddr(p.TLSALPNPort))
	if err != nil {
		t.Fatal(err)
	}
	o := apptls.Options{
		Source: apptls.SourceACME,
		Names:  []string{"localhost"},
		ACME: apptls.ACMEOptions{
			Directory:      p.Directory,
			Email:          "ops@example.internal",
			AgreeTerms:     true,
			Roots:          p.Roots,
			Challenges:     []string{apptls.ChallengeTLSALPN01},
			ListenHost:     p.ChallengeIP,
			AltTLSALPNPort: p.TLSALPNPort,
			// See pebbletest's doc: pebble's ARI is unreliable.
			DisableRenewalInfo: true,
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
func waitReady(t *testing.T, m *apptls.Manager) {
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

// TestACMEIssueRenewAndFailingCA drives the apptls.Manager against pebble with
// real TLS-ALPN-01 validation answered by our own listener: issuance,
// forced renewal, and a failing CA whose error surfaces in Status while
// the old certificate keeps serving.
func TestACMEIssueRenewAndFailingCA(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	m, port := acmeManager(t, p, nil)
	url := "https://localhost:" + port + "/"
	tc := &tls.Config{RootCAs: p.IssuedRoots}
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
	acmeManager(t, p, func(o *apptls.Options) { o.ACME.EAB = &apptls.EAB{KeyID: "duo-appliance", MACKey: mac} })

	bad := pebbletest.Start(t, pebbletest.Options{RequireEAB: true, EAB: map[string]string{"duo-appliance": mac}})
	o := apptls.Options{Source: apptls.SourceACME, Names: []string{"localhost"}, ACME: apptls.ACMEOptions{
		Directory: bad.Directory, Email: "ops@example.internal", AgreeTerms: true, Roots: bad.Roots,
		Challenges: []string{apptls.ChallengeTLSALPN01}, ListenHost: bad.ChallengeIP, AltTLSALPNPort: bad.TLSALPNPort,
		EAB: &apptls.EAB{KeyID: "duo-appliance", MACKey: pebbletest.NewMACKey(t)},
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
			t.Fatalf("reason = %q, want the apptls.EAB failure", reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACMEHTTP01 issues through certmagic's own HTTP-01 solver.
func TestACMEHTTP01(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	m, _ := startManager(t, apptls.Options{Source: apptls.SourceACME, Names: []string{"localhost"}, ACME: apptls.ACMEOptions{
		Directory: p.Directory, Email: "ops@example.internal", AgreeTerms: true, Roots: p.Roots,
		Challenges: []string{apptls.ChallengeHTTP01}, ListenHost: p.ChallengeIP, AltHTTPPort: p.HTTPPort,
	}})
	waitReady(t, m)
	if st := m.Status(); len(st.Certificates) != 1 || !strings.Contains(st.Certificates[0].Issuer, "Pebble") {
		t.Errorf("status = %+v", st)
	}
}

// startManager builds and starts a Manager for the test's lifetime; the
// buffer collects its logs.
func startManager(t *testing.T, o apptls.Options) (*apptls.Manager, *testutil.LogBuffer) {
	t.Helper()
	logs := &testutil.LogBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	m, err := apptls.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := m.Start(t.Context()); err != nil {
		m.Stop()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(m.Stop)
	return m, logs
}

// getVia fetches url over a fresh connection with tc and returns the
// leaf the server presented.
func getVia(tc *tls.Config, url string) (*x509.Certificate, error) {
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		return nil, fmt.Errorf("HTTP %d %q", resp.StatusCode, body)
	}
	return resp.TLS.PeerCertificates[0], nil
}
