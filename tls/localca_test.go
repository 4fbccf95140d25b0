package tls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	stdtls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

func openCA(t *testing.T, dir string, o LocalCAOptions) *LocalCA {
	t.Helper()
	ca, err := OpenLocalCA(dir, o)
	if err != nil {
		t.Fatalf("OpenLocalCA: %v", err)
	}
	return ca
}

func newCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// issueLeaf issues for csr and returns the single leaf the PEM must hold.
func issueLeaf(t *testing.T, ca *LocalCA, csr *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	ic, err := ca.Issue(context.Background(), csr)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	block, rest := pem.Decode(ic.Certificate)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("Issue returned no PEM certificate")
	}
	if b, _ := pem.Decode(rest); b != nil {
		t.Fatalf("Issue returned more than the leaf")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func rootPool(ca *LocalCA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

func TestLocalCAIssue(t *testing.T) {
	ca := openCA(t, filepath.Join(t.TempDir(), "ca"), LocalCAOptions{})
	root := ca.Certificate()
	if !root.IsCA || !root.BasicConstraintsValid || root.MaxPathLen != 0 || !root.MaxPathLenZero ||
		root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(root.SubjectKeyId) == 0 {
		t.Fatalf("root constraints: IsCA=%v BCV=%v MaxPathLen=%d zero=%v KU=%v SKID=%x",
			root.IsCA, root.BasicConstraintsValid, root.MaxPathLen, root.MaxPathLenZero, root.KeyUsage, root.SubjectKeyId)
	}
	if id, ok := strings.CutPrefix(root.Subject.CommonName, defaultLocalCAName+" "); !ok || len(id) != 8 {
		t.Fatalf("root CN %q, want %q + 8 hex digits", root.Subject.CommonName, defaultLocalCAName)
	}
	if root.SerialNumber.Sign() <= 0 || root.SerialNumber.BitLen() > 128 {
		t.Fatalf("root serial %v not a positive 128-bit number", root.SerialNumber)
	}
	if ca.IssuerKey() != LocalCAIssuerKey {
		t.Fatalf("IssuerKey = %q", ca.IssuerKey())
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		key    crypto.Signer
		dns    []string
		ips    []string
		cn     string
		verify []string // names a client would dial
	}{
		{"dns", nil, []string{"duo.example.internal", "localhost"}, nil, "duo.example.internal", []string{"duo.example.internal", "localhost"}},
		{"ipv4", nil, nil, []string{"10.1.2.3"}, "10.1.2.3", []string{"10.1.2.3"}},
		{"ipv6", nil, nil, []string{"fd00::17"}, "fd00::17", []string{"fd00::17"}},
		{"wildcard", nil, []string{"*.example.internal"}, nil, "*.example.internal", []string{"gitlab.example.internal"}},
		{"mixed rsa", rsaKey, []string{"gitlab"}, []string{"127.0.0.1", "::1"}, "gitlab", []string{"gitlab", "127.0.0.1", "::1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.CertificateRequest{DNSNames: tc.dns}
			for _, s := range tc.ips {
				tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
			}
			leaf := issueLeaf(t, ca, newCSR(t, tc.key, tmpl))
			if leaf.Subject.CommonName != tc.cn {
				t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, tc.cn)
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("ExtKeyUsage = %v, want [ServerAuth]", leaf.ExtKeyUsage)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if tc.key != nil {
				wantKU |= x509.KeyUsageKeyEncipherment
			}
			if leaf.KeyUsage != wantKU {
				t.Errorf("KeyUsage = %v, want %v", leaf.KeyUsage, wantKU)
			}
			if leaf.IsCA || string(leaf.AuthorityKeyId) != string(root.SubjectKeyId) {
				t.Errorf("IsCA=%v AKID=%x, want false and root SKID %x", leaf.IsCA, leaf.AuthorityKeyId, root.SubjectKeyId)
			}
			for _, name := range tc.verify {
				_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: rootPool(ca),
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
				if err != nil {
					t.Errorf("verify %s: %v", name, err)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.invalid", Roots: rootPool(ca)}); err == nil {
				t.Errorf("leaf verified for a name it was not issued for")
			}
		})
	}
}

func TestLocalCAPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first := openCA(t, dir, LocalCAOptions{Name: "site A"})
	second := openCA(t, dir, LocalCAOptions{Name: "ignored on load"})
	if !first.Certificate().Equal(second.Certificate()) || string(first.CertificatePEM()) != string(second.CertificatePEM()) {
		t.Fatal("reopening the CA gave a different root")
	}
	if !strings.HasPrefix(second.Certificate().Subject.CommonName, "site A ") {
		t.Fatalf("root CN %q, want the creation-time name", second.Certificate().Subject.CommonName)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, statedir.LocalCACertFile))
	if err != nil || string(onDisk) != string(first.CertificatePEM()) {
		t.Fatalf("ca.crt differs from CertificatePEM (err %v)", err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, statedir.LocalCAKeyFile: 0o600, statedir.LocalCACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %q = %04o, want %04o", name, got, want)
		}
	}
	other := openCA(t, filepath.Join(t.TempDir(), "ca"), LocalCAOptions{Name: "site A"})
	if other.Certificate().Subject.CommonName == first.Certificate().Subject.CommonName {
		t.Errorf("two installs share the root CN %q", other.Certificate().Subject.CommonName)
	}
}

func TestLocalCARefusesBadState(t *testing.T) {
	otherDir := filepath.Join(t.TempDir(), "other")
	openCA(t, otherDir, LocalCAOptions{})
	otherKey, err := os.ReadFile(filepath.Join(otherDir, statedir.LocalCAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		opts    LocalCAOptions
		want    []string // substrings of the error
	}{
		{"world-readable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, statedir.LocalCAKeyFile), 0o644) },
			LocalCAOptions{}, []string{statedir.LocalCAKeyFile, "chmod 600"}},
		{"group-readable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, statedir.LocalCAKeyFile), 0o640) },
			LocalCAOptions{}, []string{statedir.LocalCAKeyFile, "chmod 600"}},
		{"mismatched key", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, statedir.LocalCAKeyFile), otherKey, 0o600)
		},
			LocalCAOptions{}, []string{"does not match"}},
		{"corrupt cert", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, statedir.LocalCACertFile), []byte("garbage\n"), 0o644)
		},
			LocalCAOptions{}, []string{statedir.LocalCACertFile, "no PEM CERTIFICATE"}},
		{"corrupt key", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, statedir.LocalCAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("xx")}), 0o600)
		}, LocalCAOptions{}, []string{statedir.LocalCAKeyFile, "malformed"}},
		{"cert without key", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, statedir.LocalCAKeyFile)) },
			LocalCAOptions{}, []string{"exists without"}},
		{"expired root", func(*testing.T, string) {},
			LocalCAOptions{Now: func() time.Time { return time.Now().Add(rootLifetime + time.Hour) }}, []string{"expired"}},
		{"leaf lifetime too short", func(*testing.T, string) {}, LocalCAOptions{LeafLifetime: time.Minute}, []string{"lifetime"}},
		{"leaf lifetime too long", func(*testing.T, string) {}, LocalCAOptions{LeafLifetime: rootLifetime}, []string{"lifetime"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			openCA(t, dir, LocalCAOptions{})
			key, err := os.ReadFile(filepath.Join(dir, statedir.LocalCAKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			tc.breakIt(t, dir)
			_, err = OpenLocalCA(dir, tc.opts)
			if err == nil {
				t.Fatal("OpenLocalCA accepted a bad state")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if body := strings.Split(string(key), "\n")[1]; strings.Contains(err.Error(), body[:16]) || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error leaks key material: %q", err)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLocalCAConcurrentCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	const n = 8
	cas := make([]*LocalCA, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cas[i], errs[i] = OpenLocalCA(dir, LocalCAOptions{}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("opener %d: %v", i, errs[i])
		}
		if !cas[i].Certificate().Equal(cas[0].Certificate()) {
			t.Fatalf("opener %d got a different root", i)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries after creation, want ca.key and ca.crt only", len(entries))
	}
}

func TestLocalCARecoversKeyWithoutCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first := openCA(t, dir, LocalCAOptions{})
	// A crash between publishing the key and the cert leaves the key alone, maybe with a temp file.
	if err := os.Remove(filepath.Join(dir, statedir.LocalCACertFile)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ".ca.crt.tmp-123"), []byte("half"), 0o600)
	again := openCA(t, dir, LocalCAOptions{})
	if !again.key.Public().(*ecdsa.PublicKey).Equal(first.Certificate().PublicKey) {
		t.Fatal("recovered root does not use the existing key")
	}
	issueLeaf(t, again, newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"localhost"}}))
}

func TestLocalCAClock(t *testing.T) {
	clock := testutil.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	ca := openCA(t, filepath.Join(t.TempDir(), "ca"), LocalCAOptions{Now: clock.Now, LeafLifetime: 48 * time.Hour})
	rootEnd := ca.Certificate().NotAfter
	csr := newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"duo.internal"}})

	tests := []struct {
		name          string
		now           time.Time
		before, after time.Time
	}{
		{"fresh", clock.Now(), clock.Now().Add(-clockSkew), clock.Now().Add(48 * time.Hour)},
		{"later", clock.Now().Add(100 * 24 * time.Hour), clock.Now().Add(100*24*time.Hour - clockSkew), clock.Now().Add(102 * 24 * time.Hour)},
		{"near root expiry", rootEnd.Add(-time.Hour), rootEnd.Add(-time.Hour - clockSkew), rootEnd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Set(tc.now)
			leaf := issueLeaf(t, ca, csr)
			if !leaf.NotBefore.Equal(tc.before) || !leaf.NotAfter.Equal(tc.after) {
				t.Errorf("validity [%v, %v], want [%v, %v]", leaf.NotBefore, leaf.NotAfter, tc.before, tc.after)
			}
			if leaf.NotAfter.After(rootEnd) {
				t.Errorf("leaf outlives the root")
			}
		})
	}
	clock.Set(rootEnd.Add(time.Second))
	if _, err := ca.Issue(context.Background(), csr); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Issue after root expiry: err = %v, want expired", err)
	}
}

func TestLocalCARefusesBadCSR(t *testing.T) {
	ca := openCA(t, filepath.Join(t.TempDir(), "ca"), LocalCAOptions{})
	badSig := newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"duo.internal"}})
	badSig.Signature = append([]byte(nil), badSig.Signature...)
	badSig.Signature[len(badSig.Signature)-1] ^= 0xff
	u, _ := url.Parse("spiffe://duo/proxy")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	type badCSR struct {
		name string
		ctx  context.Context
		csr  *x509.CertificateRequest
		want string // substring of the error
	}
	tests := []badCSR{
		{"nil", nil, nil, "nil CSR"},
		{"bad signature", nil, badSig, "signature"},
		{"no names", nil, newCSR(t, nil, &x509.CertificateRequest{}), "no DNS names"},
		{"subject only", nil, newCSR(t, nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "duo.internal"}}), "no DNS names"},
		{"uri SAN", nil, newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"duo.internal"}, URIs: []*url.URL{u}}), "URI"},
		{"email SAN", nil, newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"duo.internal"}, EmailAddresses: []string{"a@duo.internal"}}), "email"},
		{"unspecified IP", nil, newCSR(t, nil, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4zero}}), "unspecified"},
		{"too many names", nil, newCSR(t, nil, &x509.CertificateRequest{DNSNames: manyNames(maxLeafNames + 1)}), "more than"},
		{"canceled", canceled, newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"duo.internal"}}), "canceled"},
	}
	for _, name := range []string{"-lead.example", "trail-.example", "a..b", "under_score.example", "sp ace.example",
		"*.internal", "*", "foo.*.example", "*x.example.internal", "trailing.dot.", "127.0.0.1", strings.Repeat("a", 64) + ".example"} {
		tests = append(tests, badCSR{"hostname " + name, nil,
			newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"ok.example", name}}), "DNS SAN"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			ic, err := ca.Issue(ctx, tc.csr)
			if err == nil {
				t.Fatalf("Issue accepted it: %q", ic.Certificate)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("h%d.example", i)
	}
	return names
}

// newManager returns a certmagic config issuing from ca into storageDir, and its cache's stop.
func newManager(t *testing.T, ca *LocalCA, storageDir string) (*certmagic.Config, func()) {
	t.Helper()
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           zap.NewNop(),
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: storageDir},
		Issuers: []certmagic.Issuer{ca},
		Logger:  zap.NewNop(),
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
	})
	return cfg, cache.Stop
}

// serve runs an HTTPS server on loopback with cfg's TLS config and returns its address.
func serve(t *testing.T, cfg *certmagic.Config) string {
	t.Helper()
	tlsCfg := cfg.TLSConfig()
	tlsCfg.NextProtos = append([]string{"http/1.1"}, tlsCfg.NextProtos...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(stdtls.NewListener(ln, tlsCfg))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// get fetches https://addr/ trusting only caPEM and returns the served leaf.
func get(t *testing.T, addr, serverName string, caPEM []byte) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("exported CA PEM does not parse")
	}
	tr := &http.Transport{TLSClientConfig: &stdtls.Config{RootCAs: pool, ServerName: serverName}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET (ServerName %q): %v", serverName, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	if n := len(resp.TLS.PeerCertificates); n != 1 {
		t.Errorf("server sent %d certificates, want the leaf only", n)
	}
	return resp.TLS.PeerCertificates[0]
}

func TestLocalCAWithCertmagic(t *testing.T) {
	ctx := context.Background()
	storage := t.TempDir()
	clock := testutil.NewClock(time.Now().Add(-6 * 24 * time.Hour))
	ca := openCA(t, filepath.Join(t.TempDir(), "ca"), LocalCAOptions{Now: clock.Now, LeafLifetime: 7 * 24 * time.Hour})

	cfg, stop := newManager(t, ca, storage)
	if err := cfg.ManageSync(ctx, []string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	addr := serve(t, cfg)
	old := get(t, addr, "localhost", ca.CertificatePEM())
	if got := get(t, addr, "", ca.CertificatePEM()); len(got.IPAddresses) != 1 || !got.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("by IP: served leaf has IPs %v", got.IPAddresses)
	}
	if time.Until(old.NotAfter) > 2*24*time.Hour {
		t.Fatalf("first leaf expires %v, want about a day from now", old.NotAfter)
	}
	stop()

	// A restart a day before expiry: certmagic finds the stored leaf in its
	// renewal window and renews it while managing, using the now-correct clock.
	clock.Set(time.Now())
	cfg2, stop2 := newManager(t, ca, storage)
	defer stop2()
	if err := cfg2.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("ManageSync after restart: %v", err)
	}
	renewed := get(t, serve(t, cfg2), "localhost", ca.CertificatePEM())
	if !renewed.NotAfter.After(old.NotAfter.Add(5*24*time.Hour)) || renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatalf("leaf not renewed: old NotAfter %v, new %v", old.NotAfter, renewed.NotAfter)
	}
}
