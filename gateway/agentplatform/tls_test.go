package agentplatform

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestTLSWithALPN: with a TLS config the listener speaks TLS and
// negotiates h2 (Workhorse's grpc-go refuses a server without ALPN), and
// a TLS client with the server's root gets through to ListTools.
func TestTLSWithALPN(t *testing.T) {
	cert, pool := selfSignedCert(t)
	h := newHarness(t, harnessOptions{})
	svc, err := New(Options{Validator: h.svc.o.Validator, Flows: map[string]flow.Flow{}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go func() { _ = svc.Serve(ln) }()
	t.Cleanup(func() { svc.Shutdown(context.Background()) })

	raw, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	must(t, err)
	if p := raw.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	raw.Close()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	must(t, err)
	defer conn.Close()
	if _, err := contract.NewDuoWorkflowClient(conn).ListTools(h.ctx(h.railsMD("duo_agent_platform")), &contract.ListToolsRequest{}); err != nil {
		t.Fatal(err)
	}
}

func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	c, err := x509.ParseCertificate(der)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestProbe runs GitLab's health probe against the TLS listener: with the
// right root it passes, with the system roots only (Workhorse's view of a
// private CA) it fails on the certificate.
func TestProbe(t *testing.T) {
	cert, pool := selfSignedCert(t)
	h := newHarness(t, harnessOptions{})
	svc, err := New(Options{Validator: h.svc.o.Validator, Flows: map[string]flow.Flow{"chat": toolFlow{[]map[string]any{spec("get_issue")}}},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go func() { _ = svc.Serve(ln) }()
	t.Cleanup(func() { svc.Shutdown(context.Background()) })
	n, err := Probe(context.Background(), ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, h.railsMD("duo_agent_platform"))
	if err != nil || n != 1 {
		t.Fatalf("probe: %d %v", n, err)
	}
	if _, err := Probe(context.Background(), ln.Addr().String(), &tls.Config{ServerName: "127.0.0.1"}, h.railsMD("duo_agent_platform")); err == nil || !strings.Contains(err.Error(), "not operational") {
		t.Fatalf("untrusted certificate: %v", err)
	}
}
