package appliance

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// connectProxy is an HTTP CONNECT proxy on loopback that tunnels every
// host to target and records which hosts were asked for.
func connectProxy(t *testing.T, target string) (url string, asked func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hosts []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil || req.Method != http.MethodConnect {
					_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
					return
				}
				mu.Lock()
				hosts = append(hosts, req.Host)
				mu.Unlock()
				up, err := net.Dial("tcp", target)
				if err != nil {
					_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), hosts...)
	}
}

// TestOutboundTrustAndProxy: an internal GitLab whose certificate is
// signed by a private CA is reached through the corporate proxy named in
// HTTPS_PROXY, trusting that CA only because outbound.ca_bundle lists it;
// NO_PROXY exempts hosts.
func TestOutboundTrustAndProxy(t *testing.T) {
	dir := t.TempDir()
	ca, err := apptls.OpenLocalCA(filepath.Join(dir, "corp-ca"), apptls.LocalCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"gitlab.corp.test"}}, key)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	issued, err := ca.Issue(context.Background(), csr)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, err := tlsPair(issued.Certificate, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "gitlab") }))
	srv.TLS = cert
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	proxyURL, asked := connectProxy(t, srv.Listener.Addr().String())
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	target := "https://gitlab.corp.test:" + port + "/"

	bundle := filepath.Join(dir, "corp.pem")
	if err := os.WriteFile(bundle, ca.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HTTPS_PROXY", proxyURL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("https_proxy", "")
	t.Setenv("no_proxy", "")

	without := &config.Config{Outbound: config.OutboundConfig{Timeout: 10 * time.Second}}
	client, err := without.OutboundClient()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(target); err == nil {
		t.Fatal("the private CA was trusted without outbound.ca_bundle")
	}

	with := &config.Config{Outbound: config.OutboundConfig{CABundle: bundle, Timeout: 10 * time.Second}}
	client, err = with.OutboundClient()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(target)
	if err != nil {
		t.Fatalf("GET through the proxy with the CA bundle: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "gitlab" {
		t.Fatalf("body %q", body)
	}
	if h := asked(); len(h) == 0 || h[len(h)-1] != "gitlab.corp.test:"+port {
		t.Errorf("the proxy was asked for %v", h)
	}

	// NO_PROXY: the proxy function exempts the host (checked without a
	// request: a direct connection would need DNS for gitlab.corp.test).
	t.Setenv("NO_PROXY", "corp.test")
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	if u, err := with.Outbound.ProxyFunc()(req); err != nil || u != nil {
		t.Errorf("NO_PROXY=corp.test: proxy %v, %v; want direct", u, err)
	}
	other, _ := http.NewRequest(http.MethodGet, "https://api.privatemode.ai/", nil)
	if u, err := with.Outbound.ProxyFunc()(other); err != nil || u == nil || u.String() != proxyURL {
		t.Errorf("other hosts: proxy %v, %v; want %s", u, err, proxyURL)
	}
}

// tlsPair builds a server TLS config from PEM certificate and key.
func tlsPair(certPEM, keyPEM []byte) (*tls.Config, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{c}}, nil
}
