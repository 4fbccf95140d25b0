package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// capture is a TCP relay in front of the sandbox process that keeps every
// byte the appliance sends to its backend, as it went over the wire.
type capture struct{ testutil.LogBuffer }

// posts counts the inference requests (POST /v1/…) captured so far.
func (c *capture) posts() int { return bytes.Count(c.Bytes(), []byte("POST /v1/")) }

// cutRelay is a capturing TCP relay in front of the sandbox (standing in
// for the untrusted Privatemode API gateway) that can cut answers short:
// while cut > 0, each connection forwards at most cut bytes of its answer
// and then closes.
type cutRelay struct {
	capture
	cut atomic.Int64
}

// interpose points the sandbox directory's endpoint at a capturing relay
// in front of the sandbox.
func interpose(t *testing.T, dir string) *cutRelay {
	t.Helper()
	epFile := filepath.Join(dir, sandboxEndpointFile)
	ep, err := os.ReadFile(epFile)
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(strings.TrimSpace(string(ep)), "http://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &cutRelay{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(io.MultiWriter(up, &r.capture), down)
				_ = up.Close()
			})
			wg.Go(func() {
				defer down.Close()
				defer up.Close()
				sent := int64(-1)
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					chunk := buf[:n]
					if c := r.cut.Load(); c > 0 && n > 0 {
						sent = max(sent, 0)
						chunk = chunk[:min(int64(n), max(c-sent, 0))]
						sent += int64(len(chunk))
					}
					if _, werr := down.Write(chunk); werr != nil || err != nil {
						return
					}
					if c := r.cut.Load(); c > 0 && sent >= c {
						return
					}
				}
			})
		}
	})
	if err := os.WriteFile(epFile, []byte("http://"+ln.Addr().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// listenersEnv is the real binary serving all three listeners (proxy,
// gateway, admin) over TLS from its local CA, in sandbox mode behind a
// capturing relay, with a demo GitLab in this test process.
type listenersEnv struct {
	t                         *testing.T
	serve                     *proc
	state                     string
	client                    *http.Client // trusts only the local CA
	roots                     *x509.CertPool
	proxyAddr, gwAddr, admAdr string // 127.0.0.1:port
	gitlab                    *gitlabtest.Issuer
	key                       *rsa.PrivateKey // the GitLab issuer's signing key
	backend                   *cutRelay
	adminToken                string
}

// url is the https URL of a listener address, under the certificate's
// name.
func (e *listenersEnv) url(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "https://localhost:" + port
}

// startListenersEnv starts the sandbox, a demo GitLab (its handler wrapped
// by wrap, if set) and the binary with extra YAML appended to the
// configuration, and waits until the proxy and the gateway are ready.
func startListenersEnv(t *testing.T, extra string, wrap func(http.Handler) http.Handler) *listenersEnv {
	t.Helper()
	e := launchListenersEnv(t, extra, wrap)
	e.waitOK(e.url(e.gwAddr)+"/monitoring/ready", nil)
	return e
}

// startListenersEnvNoWait is startListenersEnv for a GitLab that may be
// down: it waits for the proxy only.
func startListenersEnvNoWait(t *testing.T, wrap func(http.Handler) http.Handler) *listenersEnv {
	t.Helper()
	return launchListenersEnv(t, "", wrap)
}

func launchListenersEnv(t *testing.T, extra string, wrap func(http.Handler) http.Handler) *listenersEnv {
	t.Helper()
	dir := startSandboxProc(t)
	e := &listenersEnv{t: t, backend: interpose(t, dir)}
	var err error
	if e.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if e.gitlab, err = gitlabtest.New(gitlabtest.Options{Key: e.key}); err != nil {
		t.Fatal(err)
	}
	h := e.gitlab.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	gl := httptest.NewUnstartedServer(h)
	gl.StartTLS()
	t.Cleanup(gl.Close)
	e.gitlab.SetURL(gl.URL)
	ca := writeTemp(t, "gitlab-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gl.Certificate().Raw})))

	e.adminToken = "admin-token-" + rand.Text()
	sum := sha256.Sum256([]byte(e.adminToken))
	e.proxyAddr, e.gwAddr, e.admAdr = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := writeTemp(t, "config.yaml", fmt.Sprintf(`log:
  level: debug
outbound:
  ca_bundle: %s
proxy:
  read_timeout: 1s
  max_request_bytes: 16384
gateway:
  listen: %s
  gitlab_url: %s
  max_request_bytes: 65536
  models:
    default: %s
    code_completions: %s
  completion_format: suffix
admin:
  token_sha256: [%s]
%s`, ca, e.gwAddr, gl.URL, sandbox.ModelChat, sandbox.ModelCode, hex.EncodeToString(sum[:]), extra))
	e.state = t.TempDir()
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + e.state, "DUO_CONFIDENTIAL_ADMIN_LISTEN=" + e.admAdr}
	e.serve = startProc(t, env, "--config", cfg, "serve", "--sandbox", dir, "--listen", e.proxyAddr, "--drain", "10s")
	e.client = localCAClient(t, e.state)
	pemCA, err := os.ReadFile(filepath.Join(e.state, statedir.LocalCADir, statedir.LocalCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(pemCA)
	e.waitOK(e.url(e.proxyAddr)+"/readyz", nil)
	return e
}

// waitOK polls url until it answers 200.
func (e *listenersEnv) waitOK(url string, h http.Header) {
	e.t.Helper()
	e.serve.waitUntil(e.t, url+" to answer 200", func() bool {
		s, _, _ := e.do(http.MethodGet, url, "", h)
		return s == http.StatusOK
	})
}

// do sends one request; a transport error is status 0 with the error text
// as the body.
func (e *listenersEnv) do(method, url, body string, h http.Header) (int, http.Header, []byte) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, []byte(err.Error())
	}
	if h != nil {
		req.Header = h.Clone()
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, resp.Header, []byte(err.Error())
	}
	return resp.StatusCode, resp.Header, b
}

// gitlabHeaders are Rails' headers with a fresh, valid GitLab token.
func (e *listenersEnv) gitlabHeaders() http.Header {
	e.t.Helper()
	tok, err := e.gitlab.Token(gitlabtest.TokenOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.gitlab.Headers(tok, gitlabtest.TokenOptions{})
}

// adminHeaders authenticate to the admin listener's API.
func (e *listenersEnv) adminHeaders() http.Header {
	return http.Header{"Authorization": {"Bearer " + e.adminToken}}
}

// dialTLS opens a raw TLS connection to a listener.
func (e *listenersEnv) dialTLS(addr string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{RootCAs: e.roots, ServerName: "localhost"})
}
