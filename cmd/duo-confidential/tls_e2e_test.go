package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apptls "github.com/duo-confidential/duo-confidential/tls"
	"github.com/duo-confidential/duo-confidential/tls/pebbletest"
)

// sitePKI stands in for an organisation's CA that issues operator
// certificates; the product's local CA code is a convenient issuer.
type sitePKI struct {
	ca  *apptls.LocalCA
	dir string
}

func newSitePKI(t *testing.T, now func() time.Time) *sitePKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := apptls.OpenLocalCA(filepath.Join(dir, "site-ca"), apptls.LocalCAOptions{LeafLifetime: 2 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return &sitePKI{ca: ca, dir: dir}
}

// issue writes a fresh certificate and key for names into dir (the key
// first, each file replaced atomically) and returns the certificate DER.
func (s *sitePKI) issue(t *testing.T, dir string, names ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	issued, err := s.ca.Issue(t.Context(), csr)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	writeAtomic(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	writeAtomic(t, filepath.Join(dir, "tls.crt"), issued.Certificate)
	blk, _ := pem.Decode(issued.Certificate)
	return blk.Bytes
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// servedLeaf connects to addr as name with roots and returns the leaf.
func servedLeaf(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: name})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestServeOperatorCertificates runs the binary on the operator's files:
// it serves them, SIGHUP swaps in new ones without a restart, and a bad
// pair on SIGHUP keeps the current one serving.
func TestServeOperatorCertificates(t *testing.T) {
	t.Parallel()
	sb := startSandboxProc(t)
	site := newSitePKI(t, nil)
	certs := t.TempDir()
	first := site.issue(t, certs, "localhost", "127.0.0.1")
	cfg := writeTemp(t, "config.yaml", fmt.Sprintf("tls:\n  source: files\n  names: [localhost, 127.0.0.1]\n  files:\n    cert: %s\n    key: %s\n    poll_interval: 1h\n",
		filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key")))
	addr := freeAddr(t)
	p := startProc(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir()}, "--config", cfg, "serve", "--sandbox", sb, "--listen", addr)
	roots := x509.NewCertPool()
	roots.AddCert(site.ca.Certificate())
	client := &http.Client{Timeout: procLimit, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	_, port, _ := net.SplitHostPort(addr)
	p.waitUntil(t, "serve to be ready over https", func() bool {
		resp, err := client.Get("https://localhost:" + port + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if leaf, err := servedLeaf(addr, "localhost", roots); err != nil || string(leaf.Raw) != string(first) {
		t.Fatalf("served leaf is not the operator's: %v", err)
	}

	second := site.issue(t, certs, "localhost", "127.0.0.1")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitUntil(t, "the new certificate after SIGHUP", func() bool {
		leaf, err := servedLeaf(addr, "localhost", roots)
		return err == nil && string(leaf.Raw) == string(second)
	})

	// A key that is not the certificate's: the reload fails, loudly, and
	// the second pair keeps serving.
	other := t.TempDir()
	site.issue(t, other, "localhost")
	writeAtomic(t, filepath.Join(certs, "tls.key"), mustRead(t, filepath.Join(other, "tls.key")))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitUntil(t, "the failed reload to be logged", func() bool {
		return strings.Contains(p.stderr.String(), "reload (SIGHUP) failed")
	})
	if !strings.Contains(p.stderr.String(), "does not belong to the certificate") {
		t.Errorf("the reload error does not say what is wrong:\n%s", p.stderr.String())
	}
	if leaf, err := servedLeaf(addr, "localhost", roots); err != nil || string(leaf.Raw) != string(second) {
		t.Fatalf("after a failed reload: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeRefusesBadOperatorCertificate: an expired certificate or one
// that does not cover the configured name stops the start with a clear
// error (from config validation, before anything listens).
func TestServeRefusesBadOperatorCertificate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		clock func() time.Time
		names string
		want  string
	}{
		{"expired", func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) }, "[localhost]", "expired on"},
		{"wrong name", nil, "[duo.example.internal]", "does not cover duo.example.internal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			certs := t.TempDir()
			newSitePKI(t, c.clock).issue(t, certs, "localhost")
			cfg := writeTemp(t, "config.yaml", fmt.Sprintf("tls:\n  source: files\n  names: %s\n  files:\n    cert: %s\n    key: %s\n",
				c.names, filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key")))
			r := runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir()}, "--config", cfg, "serve", "--listen", "127.0.0.1:0")
			r.want(t, 1, nil, []string{"tls.files.cert", c.want})
		})
	}
}

// TestServeACME obtains the proxy listener's certificate from a pebble
// ACME CA in this test process, validated for real over TLS-ALPN-01 on
// the binary's own listener, and trusted through tls.acme.ca_bundle.
func TestServeACME(t *testing.T) {
	p := pebbletest.Start(t, pebbletest.Options{})
	sb := startSandboxProc(t)
	bundle := writeTemp(t, "acme-ca.pem", string(p.ServerCertPEM))
	cfg := writeTemp(t, "config.yaml", fmt.Sprintf(`tls:
  source: acme
  names: [localhost]
  acme:
    directory: %s
    email: ops@example.internal
    agree_terms: true
    ca_bundle: %s
    challenges: [tls-alpn-01]
    alt_tls_alpn_port: %d
    renewal_info: false
`, p.Directory, bundle, p.TLSALPNPort))
	addr := p.ChallengeAddr(p.TLSALPNPort)
	proc := startProc(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir()}, "--config", cfg, "serve", "--sandbox", sb, "--listen", addr)
	var leaf *x509.Certificate
	proc.waitUntil(t, "a certificate from the ACME CA", func() bool {
		var err error
		leaf, err = servedLeaf(addr, "localhost", p.IssuedRoots)
		return err == nil
	})
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") || leaf.VerifyHostname("localhost") != nil {
		t.Errorf("served leaf: issuer %q, names %v", leaf.Issuer.CommonName, leaf.DNSNames)
	}
	if !strings.Contains(proc.stderr.String(), "certificate obtained") {
		t.Errorf("issuance not logged:\n%s", proc.stderr.String())
	}
}

// TestTLSCACert exports the local CA that serve uses, the same on every
// call, and refuses when the local CA is not the source.
func TestTLSCACert(t *testing.T) {
	t.Parallel()
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir()}
	a := runBin(t, env, "tls", "ca-cert")
	a.want(t, 0, []string{"-----BEGIN CERTIFICATE-----"}, []string{"SHA-256 fingerprint"})
	b := runBin(t, env, "tls", "ca-cert")
	if a.stdout != b.stdout {
		t.Error("a second export gave another CA")
	}
	blk, _ := pem.Decode([]byte(a.stdout))
	if blk == nil {
		t.Fatal("no PEM")
	}
	if c, err := x509.ParseCertificate(blk.Bytes); err != nil || !c.IsCA {
		t.Errorf("exported certificate: %v (CA: %v)", err, err == nil && c.IsCA)
	}
	runBin(t, append(env, "DUO_CONFIDENTIAL_TLS_SOURCE=off"), "tls", "ca-cert").want(t, 1, nil, []string{"tls.source is \"off\""})
}
