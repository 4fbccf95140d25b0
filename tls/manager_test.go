package tls

import (
	stdtls "crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

func localCAManager(t *testing.T, names ...string) *Manager {
	t.Helper()
	m, _ := startManager(t, Options{Source: SourceLocalCA, Names: names})
	return m
}

// TestLocalCAServesByNameAndIP: the exported CA verifies the served chain
// whether the client sends the name (SNI) or connects by IP (no SNI, so
// the default server name's certificate must cover the IP).
func TestLocalCAServesByNameAndIP(t *testing.T) {
	m := localCAManager(t, "localhost", "127.0.0.1", "::1")
	port := serveManager(t, m)
	pool := poolOf(t, m.LocalCA().CertificatePEM())
	for _, url := range []string{"https://localhost:" + port + "/", "https://127.0.0.1:" + port + "/"} {
		leaf, err := getVia(&stdtls.Config{RootCAs: pool}, url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if leaf.Issuer.CommonName != m.LocalCA().Certificate().Subject.CommonName {
			t.Errorf("GET %s: issuer %q, want the local CA", url, leaf.Issuer.CommonName)
		}
	}
	st := m.Status()
	// certmagic manages one certificate per name.
	if !st.Ready || len(st.Certificates) != 3 || st.CACertificate == "" || len(st.Warnings) != 0 {
		t.Fatalf("status = %+v", st)
	}
	for i, want := range []string{"localhost", "127.0.0.1", "::1"} {
		c := st.Certificates[i]
		if len(c.Names) != 1 || c.Names[0] != want || !c.Managed || c.LastRenewalAt.IsZero() {
			t.Errorf("certificate %d = %+v, want managed, for %s, renewal time from certmagic's events", i, c, want)
		}
	}
}

// TestListenerProtocols: fasthttp speaks HTTP/1.1 only, so ALPN must say
// so: an h2-only client (gRPC) is refused at the handshake, and old
// protocol versions and suites are refused.
func TestListenerProtocols(t *testing.T) {
	m := localCAManager(t, "localhost")
	port := serveManager(t, m)
	pool := poolOf(t, m.LocalCA().CertificatePEM())
	cases := []struct {
		name    string
		tc      func() *stdtls.Config
		wantErr string
		proto   string
	}{
		{"no ALPN", func() *stdtls.Config { return &stdtls.Config{} }, "", ""},
		{"http/1.1 only", func() *stdtls.Config { return &stdtls.Config{NextProtos: []string{"http/1.1"}} }, "", "http/1.1"},
		{"h2 then http/1.1", func() *stdtls.Config { return &stdtls.Config{NextProtos: []string{"h2", "http/1.1"}} }, "", "http/1.1"},
		{"h2 only", func() *stdtls.Config { return &stdtls.Config{NextProtos: []string{"h2"}} }, "no application protocol", ""},
		{"TLS 1.1", func() *stdtls.Config {
			return &stdtls.Config{MinVersion: stdtls.VersionTLS10, MaxVersion: stdtls.VersionTLS11}
		}, "protocol version", ""},
		{"TLS 1.2 CBC only", func() *stdtls.Config {
			return &stdtls.Config{MaxVersion: stdtls.VersionTLS12, CipherSuites: []uint16{stdtls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
		}, "handshake failure", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := c.tc()
			tc.RootCAs, tc.ServerName = pool, "localhost"
			conn, err := stdtls.Dial("tcp", "127.0.0.1:"+port, tc)
			if c.wantErr != "" {
				if err == nil {
					conn.Close()
					t.Fatalf("handshake succeeded, want %q", c.wantErr)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().NegotiatedProtocol; got != c.proto {
				t.Errorf("ALPN = %q, want %q", got, c.proto)
			}
		})
	}
}

// TestLocalCAReplacedReissues: a state directory whose CA was replaced
// (restored from another machine, or deleted) must not keep serving
// leaves of the old root.
func TestLocalCAReplacedReissues(t *testing.T) {
	state := t.TempDir()
	first, _ := startManager(t, Options{Source: SourceLocalCA, Names: []string{"localhost"}, StateDir: state})
	oldRoot := first.LocalCA().Certificate()
	first.Stop()
	if err := os.RemoveAll(filepath.Join(state, statedir.LocalCADir)); err != nil {
		t.Fatal(err)
	}
	second, logs := startManager(t, Options{Source: SourceLocalCA, Names: []string{"localhost"}, StateDir: state})
	if second.LocalCA().Certificate().Equal(oldRoot) {
		t.Fatal("the CA was not recreated")
	}
	port := serveManager(t, second)
	if _, err := getVia(&stdtls.Config{RootCAs: poolOf(t, second.LocalCA().CertificatePEM())}, "https://localhost:"+port+"/"); err != nil {
		t.Fatalf("the new CA does not verify the served chain: %v\nlogs:\n%s", err, logs)
	}
}

func TestPlainHTTPIsExplicitAndWarned(t *testing.T) {
	m, logs := startManager(t, Options{Source: SourceOff})
	if m.ServerConfig() != nil {
		t.Error("ServerConfig is not nil with the source off")
	}
	st := m.Status()
	if !st.Plaintext || !st.Ready || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "plain HTTP") {
		t.Errorf("status = %+v", st)
	}
	if !strings.Contains(logs.String(), "plain HTTP") {
		t.Errorf("no warning logged:\n%s", logs)
	}
}

func TestOptionsRejected(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"unknown source", Options{Source: "self-signed"}, "unknown certificate source"},
		{"acme without names", Options{Source: SourceACME, StateDir: "/x", ACME: ACMEOptions{Directory: "https://ca", Email: "a@b", AgreeTerms: true}}, "at least one name"},
		{"acme without agreement", Options{Source: SourceACME, StateDir: "/x", Names: []string{"duo.example.com"}, ACME: ACMEOptions{Directory: "https://ca", Email: "a@b"}}, "agreement"},
		{"acme bad challenge", Options{Source: SourceACME, StateDir: "/x", Names: []string{"duo.example.com"}, ACME: ACMEOptions{Directory: "https://ca", Email: "a@b", AgreeTerms: true, Challenges: []string{"dns-01"}}}, "unknown ACME challenge"},
		{"acme half EAB", Options{Source: SourceACME, StateDir: "/x", Names: []string{"duo.example.com"}, ACME: ACMEOptions{Directory: "https://ca", Email: "a@b", AgreeTerms: true, EAB: &EAB{KeyID: "k"}}}, "external account"},
		{"bad name", Options{Source: SourceLocalCA, StateDir: "/x", Names: []string{"duo_confidential.internal"}}, "invalid character"},
		{"local CA without names", Options{Source: SourceLocalCA, StateDir: "/x"}, "at least one name"},
		{"files without key", Options{Source: SourceFiles, StateDir: "/x", Files: FilesOptions{Cert: "/c"}}, "key file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestStatusIgnoresExpired: a certificate past its NotAfter does not
// count as served.
func TestStatusIgnoresExpired(t *testing.T) {
	now := time.Now()
	m := localCAManager(t, "localhost")
	m.now = func() time.Time { return now.Add(30 * 24 * time.Hour) }
	st := m.Status()
	if st.Ready || !strings.Contains(st.Reason, "no valid TLS certificate for localhost") {
		t.Errorf("status with every certificate expired = %+v", st)
	}
}

// TestUnknownNameWarned: a client asking for a name outside tls.names
// fails the handshake, and the log says which name to add, once.
func TestUnknownNameWarned(t *testing.T) {
	m, logs := startManager(t, Options{Source: SourceLocalCA, Names: []string{"localhost"}})
	port := serveManager(t, m)
	for range 3 {
		conn, err := stdtls.Dial("tcp", "127.0.0.1:"+port, &stdtls.Config{ServerName: "duo.corp.example", InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Fatal("a certificate was served for a name outside tls.names")
		}
	}
	if n := strings.Count(logs.String(), "add it to tls.names"); n != 1 || !strings.Contains(logs.String(), "name=duo.corp.example") {
		t.Errorf("warned %d times (want 1):\n%s", n, logs)
	}
}
