package tls

import (
	stdtls "crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/valyala/fasthttp"
)

// startManager builds and starts a Manager, stopped at cleanup; the
// returned buffer collects its logs.
func startManager(t testing.TB, o Options) (*Manager, *testutil.LogBuffer) {
	t.Helper()
	logs := &testutil.LogBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	m, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Start's context is the manager's lifetime (ACME runs on in the
	// background), so it must outlive Start.
	if err := m.Start(t.Context()); err != nil {
		m.Stop()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(m.Stop)
	return m, logs
}

// serveManager serves "ok" over m's listener on 127.0.0.1 and returns the
// port.
func serveManager(t *testing.T, m *Manager) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, Logger: discardLogger{}}
	go func() { _ = srv.Serve(m.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// poolOf is a cert pool holding only the given PEM certificates.
func poolOf(t testing.TB, pems ...[]byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, p := range pems {
		if !pool.AppendCertsFromPEM(p) {
			t.Fatal("no certificate in PEM")
		}
	}
	return pool
}

// getVia fetches url over a fresh connection with tc and returns the leaf the
// server presented.
func getVia(tc *stdtls.Config, url string) (*x509.Certificate, error) {
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true, ForceAttemptHTTP2: false}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	resp, err := client.Get(url)
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

// writePair writes certificate and key files into dir, replacing them
// atomically (as an operator's deploy tool or a Kubernetes secret does).
func writePair(t *testing.T, dir string, certPEM, keyPEM []byte) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for _, f := range []struct {
		path string
		data []byte
	}{{keyPath, keyPEM}, {certPath, certPEM}} {
		path, tmp := f.path, f.path+".new"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath
}

// decodeFirstPEM returns the bytes of the first PEM block, or nil.
func decodeFirstPEM(b []byte) []byte {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil
	}
	return blk.Bytes
}

// discardLogger silences fasthttp's log of refused handshakes, which the
// protocol tests cause on purpose.
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
