package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	stdtls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
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

// testCA signs operator certificates for the files source.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Site PKI test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * 365 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// pair issues a leaf for names valid from nb to na and returns its
// certificate and key PEMs.
func (ca *testCA) pair(t testing.TB, names []string, nb, na time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "operator"},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
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
