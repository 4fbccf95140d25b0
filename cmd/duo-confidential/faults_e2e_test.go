package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// streamResult is what one streamed request through the binary got.
type streamResult struct {
	chunks int
	done   bool
	err    error
}

// readStream counts the content chunks of an OpenAI event stream; an
// error event or a broken stream is an error.
func readStream(body io.Reader) streamResult {
	var r streamResult
	br := bufio.NewReader(body)
	for {
		line, err := br.ReadString('\n')
		if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			if d == "[DONE]" {
				r.done = true
			} else if strings.Contains(d, `"error"`) {
				r.err = fmt.Errorf("error event %s", d)
			} else if strings.Contains(d, `"content":"`) {
				r.chunks++
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.err = err
			}
			return r
		}
	}
}

// TestServeReloadAndDrainUnderLoad runs N concurrent streams through the
// real binary, sends SIGHUP (reload) while they run and SIGTERM while they
// still run: every stream accepted before the signal completes with all
// its chunks, new connections are refused, and serve exits 0.
func TestServeReloadAndDrainUnderLoad(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t, "--tokens-per-second", "20")
	serve, base := startServeProc(t, dir)
	const n, tokens = 8, 40 // 2s per stream
	ctx, cancel := context.WithTimeout(context.Background(), procLimit)
	defer cancel()

	results := make([]streamResult, n)
	started := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range n {
		resp := chatRequest(t, ctx, base, fmt.Sprintf("drain under load %d", i), true, tokens)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: HTTP %d", i, resp.StatusCode)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			first, err := br.ReadString('\n')
			started <- struct{}{}
			if err != nil {
				results[i].err = err
				return
			}
			results[i] = readStream(io.MultiReader(strings.NewReader(first), br))
		})
	}
	for range n {
		<-started
	}
	if err := serve.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	serve.waitUntil(t, "the reload to be logged", func() bool { return strings.Contains(serve.stderr.String(), "reloaded (SIGHUP)") })
	// Still serving after the reload, while the streams run.
	if got := chatOnce(t, base, "after the reload"); !strings.HasPrefix(got, "Sandbox reply to: after the reload") {
		t.Errorf("chat after SIGHUP: %q", got)
	}
	if err := serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(base, "http://")
	serve.waitUntil(t, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if c != nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	wg.Wait()
	for i, r := range results {
		if r.err != nil || !r.done || r.chunks != tokens {
			t.Errorf("stream %d accepted before SIGTERM: %d of %d chunks, [DONE] %v, error %v", i, r.chunks, tokens, r.done, r.err)
		}
	}
	if code := serve.wait(t); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0\nstderr:\n%s", code, serve.stderr.String())
	}
}

// TestGatewayJWTAttacksBinary sends the JWT attack table to the real
// binary's gateway listener (the unit-level tables in gateway/auth and
// gateway/auth_http_test.go cover each rule in depth; this shows the
// served listener applies them): every forged, stale or misdirected token
// is refused with 401 in GitLab's shape and nothing reaches the backend.
func TestGatewayJWTAttacksBinary(t *testing.T) {
	t.Parallel()
	e := startListenersEnv(t, "", nil)
	base, err := e.gitlab.Claims(gitlabtest.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kid := e.gitlab.KeyID()
	claims := func(mod map[string]any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range base {
			c[k] = v
		}
		for k, v := range mod {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := func(mod map[string]any) string { return sign(jwt.SigningMethodRS256, e.key, kid, claims(mod)) }
	b64 := base64.RawURLEncoding.EncodeToString
	pubDER, err := x509.MarshalPKIXPublicKey(&e.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	payload, _ := json.Marshal(claims(nil))
	valid := good(nil)
	parts := strings.Split(valid, ".")
	tampered, _ := json.Marshal(claims(map[string]any{"scopes": []string{"everything"}}))

	for _, tc := range []struct{ name, token string }{
		{"alg none", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(payload) + "."},
		{"HS256 with the public key (PEM) as secret", sign(jwt.SigningMethodHS256, pubPEM, kid, claims(nil))},
		{"HS256 with the public key (DER) as secret", sign(jwt.SigningMethodHS256, pubDER, kid, claims(nil))},
		{"expired", good(map[string]any{"iat": now - 7200, "nbf": now - 7205, "exp": now - 3600})},
		{"nbf in the future", good(map[string]any{"nbf": now + 3600})},
		{"wrong audience", good(map[string]any{"aud": []string{"someone-else"}})},
		{"wrong issuer", good(map[string]any{"iss": "https://gitlab.evil.example"})},
		{"unknown kid", sign(jwt.SigningMethodRS256, e.key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", claims(nil))},
		{"attacker key under GitLab's kid", sign(jwt.SigningMethodRS256, attacker, kid, claims(nil))},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"payload tampered", parts[0] + "." + b64(tampered) + "." + parts[2]},
		{"oversized token", good(map[string]any{"pad": strings.Repeat("a", 9000)})},
	} {
		before := e.backend.posts()
		h := e.gitlab.Headers(tc.token, gitlabtest.TokenOptions{})
		s, _, b := e.do(http.MethodPost, e.url(e.gwAddr)+"/v2/code/completions", completionBody, h)
		var v struct {
			Error string `json:"error"`
		}
		if s != http.StatusUnauthorized || json.Unmarshal(b, &v) != nil || v.Error == "" {
			t.Errorf("%s: HTTP %d %s, want 401 with a GitLab error", tc.name, s, b)
		}
		if got := e.backend.posts(); got != before {
			t.Errorf("%s: %d requests reached the backend", tc.name, got-before)
		}
	}
	// The same request with the valid token is served.
	if s, _, b := e.do(http.MethodPost, e.url(e.gwAddr)+"/v2/code/completions", completionBody, e.gitlab.Headers(valid, gitlabtest.TokenOptions{})); s != http.StatusOK {
		t.Errorf("valid token: HTTP %d %s", s, b)
	}
}

const completionBody = `{"current_file":{"file_name":"a.go","content_above_cursor":"func f() {","content_below_cursor":"}"}}`

// TestGatewayJWKSSlowAndRotatingUnderLoad makes GitLab's key endpoint slow
// and rotates GitLab's signing key while a burst of requests signed with
// the new key arrives: all are served after a bounded number of key
// fetches (no stampede on GitLab). Then GitLab goes down: tokens under the
// keys already fetched are still accepted.
func TestGatewayJWKSSlowAndRotatingUnderLoad(t *testing.T) {
	t.Parallel()
	var slow atomic.Bool
	var fetches atomic.Int64
	e := startListenersEnv(t, "", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == gitlabtest.JWKSPath {
				fetches.Add(1)
				if slow.Load() {
					time.Sleep(time.Second)
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	if s, _, b := e.do(http.MethodPost, e.url(e.gwAddr)+"/v2/code/completions", completionBody, e.gitlabHeaders()); s != http.StatusOK {
		t.Fatalf("before the rotation: HTTP %d %s", s, b)
	}
	slow.Store(true)
	if err := e.gitlab.Rotate(); err != nil {
		t.Fatal(err)
	}
	before := fetches.Load()
	const n = 12
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		h := e.gitlabHeaders() // signed with the new key, an unknown kid
		wg.Go(func() {
			statuses[i], _, _ = e.do(http.MethodPost, e.url(e.gwAddr)+"/v2/code/completions", completionBody, h)
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d with the rotated key, slow key endpoint: HTTP %d", i, s)
		}
	}
	if got := fetches.Load() - before; got < 1 || got > 3 {
		t.Errorf("%d key fetches for %d requests under one new kid, want 1 to 3", got, n)
	}

	slow.Store(false)
	e.gitlab.SetDown(true)
	for i := range 3 {
		if s, _, b := e.do(http.MethodPost, e.url(e.gwAddr)+"/v2/code/completions", completionBody, e.gitlabHeaders()); s != http.StatusOK {
			t.Errorf("GitLab down, request %d under a known key: HTTP %d %s", i, s, b)
		}
	}
}
