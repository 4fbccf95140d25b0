package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

const canary = "CANARY-7f3a9c-never-in-plaintext"

// fakeBackend is a minimal Privatemode server half: it decrypts requests
// with the known secrets and answers per its mode.
type fakeBackend struct {
	mu      sync.Mutex
	secrets map[string]envelope.Secret
	mode    string // "", "plaintext-200", "401", "429", "no-secret-once", "truncate", "garbage-chunk", "stall", "slow", "plain-only-200", "reflect", "done-no-finish", "pause"
	raw     [][]byte
	headers []http.Header
	hosts   []string
	calls   atomic.Int32
	release chan struct{}
	// cancelled counts requests whose context ended before the answer
	// ("slow" mode); pause holds a stream after its second event.
	cancelled atomic.Int32
	pause     chan struct{}
}

func (f *fakeBackend) lookup(id string) (envelope.Secret, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.secrets[id]
	return s, ok
}

func (f *fakeBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.raw = append(f.raw, body)
	f.headers = append(f.headers, r.Header.Clone())
	f.hosts = append(f.hosts, r.Host)
	mode := f.mode
	if mode == "no-secret-once" {
		f.mode = ""
	}
	f.mu.Unlock()
	if r.URL.Path == "/v1/models" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"id":"m","object":"model","tasks":["generate"]}]}`)
		return
	}
	plainErr := func(code int, msg string) {
		w.Header().Set("Privatemode-Encrypted", "false")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"message":%q}}`, msg)
	}
	switch mode {
	case "slow":
		select {
		case <-r.Context().Done():
			f.cancelled.Add(1)
		case <-f.release:
		}
		return
	case "plain-only-200":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"forged","usage":{"total_tokens":1}}`)
		return
	case "plaintext-200":
		w.Header().Set("Privatemode-Encrypted", "false")
		fmt.Fprint(w, `{"choices":[{"message":{"content":"injected"}}]}`)
		return
	case "401":
		plainErr(401, "invalid API key")
		return
	case "429":
		w.Header().Set("Retry-After", "7")
		plainErr(429, "slow down")
		return
	case "no-secret-once":
		plainErr(500, fmt.Sprintf("no secret for ID %q", r.Header.Get("Privatemode-Secret-ID")))
		return
	}
	ss := envelope.NewServerSession(f.lookup)
	plain, err := ss.DecryptJSON(body, envelope.ChatRequestPlain)
	if err != nil {
		plainErr(400, "decrypt: "+err.Error())
		return
	}
	var req struct {
		Stream    bool   `json:"stream"`
		CacheSalt string `json:"cache_salt"`
		Messages  []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(plain, &req); err != nil || len(req.CacheSalt) < 32 {
		plainErr(400, "bad request after decryption")
		return
	}
	echo := ""
	if len(req.Messages) > 0 {
		echo = req.Messages[len(req.Messages)-1].Content
	}
	if r.URL.Path == "/v1/messages" {
		f.anthropicStream(w, ss, mode)
		return
	}
	if mode == "reflect" {
		var env map[string]json.RawMessage
		_ = json.Unmarshal(body, &env)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","choices":%s}`, env["messages"])
		return
	}
	if !req.Stream {
		resp := fmt.Sprintf(`{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}`, "echo: "+echo)
		enc, err := ss.EncryptJSON([]byte(resp), envelope.ChatResponsePlain)
		if err != nil {
			plainErr(500, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(enc)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i := 0; i < 5; i++ {
		finish := "null"
		if i == 4 && mode != "done-no-finish" {
			finish = `"stop"`
		}
		usage := ""
		if i == 4 {
			usage = `,"usage":{"prompt_tokens":2,"completion_tokens":5}`
		}
		chunk := fmt.Sprintf(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"t%d "},"finish_reason":%s}]%s}`, i, finish, usage)
		enc, err := ss.EncryptJSON([]byte(chunk), envelope.ChatResponsePlain)
		if err != nil {
			return
		}
		if mode == "garbage-chunk" && i == 2 {
			enc = []byte(`{"id":"c1","choices":"plaintext!"}`)
		}
		fmt.Fprintf(w, ": keep-alive\r\n\r\ndata: %s\r\n\r\n", enc)
		fl.Flush()
		if mode == "truncate" && i == 2 {
			return
		}
		if mode == "pause" && i == 1 {
			<-f.pause
		}
		if mode == "stall" && i == 1 {
			<-f.release
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// fakeSecrets hands out secrets; Invalidate rotates to the next one.
type fakeSecrets struct {
	mu          sync.Mutex
	cur         envelope.Secret
	next        envelope.Secret
	notReady    error
	invalidated atomic.Int32
}

func (f *fakeSecrets) Current() (envelope.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.notReady
}

func (f *fakeSecrets) Invalidate(context.Context, string) (envelope.Secret, error) {
	f.invalidated.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur = f.next
	return f.cur, nil
}

func secretN(n byte) envelope.Secret {
	var k [32]byte
	for i := range k {
		k[i] = n + byte(i)
	}
	return envelope.Secret{ID: fmt.Sprintf("secret-%d-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", n), Key: k}
}

type harness struct {
	be      *fakeBackend
	secrets *fakeSecrets
	srv     *Server
	url     string
}

func newHarness(t *testing.T, mod func(*Options)) *harness {
	t.Helper()
	s1, s2 := secretN(1), secretN(2)
	be := &fakeBackend{secrets: map[string]envelope.Secret{s1.ID: s1, s2.ID: s2}, release: make(chan struct{}), pause: make(chan struct{})}
	up := httptest.NewServer(be)
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(be.release) })
	fs := &fakeSecrets{cur: s1, next: s2}
	o := Options{Upstream: up.URL, AllowInsecureUpstream: true, APIKey: "pm-api-key", Secrets: fs, StreamIdleTimeout: 2 * time.Second}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &harness{be: be, secrets: fs, srv: srv, url: "http://" + ln.Addr().String()}
}

func (h *harness) do(t *testing.T, method, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func chatBody(stream bool) string {
	return fmt.Sprintf(`{"model":"m","stream":%t,"messages":[{"role":"user","content":%q}],"temperature":0.2}`, stream, canary)
}

func wantOpenAIError(t *testing.T, status int, body string, wantStatus int, wantType, wantMsg string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d (%s)", status, wantStatus, body)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not OpenAI error JSON: %s", body)
	}
	if e.Error.Type != wantType || !strings.Contains(e.Error.Message, wantMsg) {
		t.Fatalf("error %+v, want type %s message ~%q", e.Error, wantType, wantMsg)
	}
}

func TestChatRoundTripAndWireHygiene(t *testing.T) {
	h := newHarness(t, nil)
	status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(false), map[string]string{
		"Cookie": "session=secret", "X-Forwarded-For": "10.1.2.3", "X-Custom": "leak", "User-Agent": "client-ua", "Authorization": "Bearer client-token",
	})
	if status != 200 || !strings.Contains(body, "echo: "+canary) {
		t.Fatalf("status %d body %s", status, body)
	}
	raw := h.be.raw[0]
	if bytes.Contains(raw, []byte(canary)) || bytes.Contains(raw, []byte("temperature\":0.2")) {
		t.Fatalf("plaintext reached the backend: %s", raw)
	}
	hd := h.be.headers[0]
	for _, k := range []string{"Cookie", "X-Forwarded-For", "X-Custom"} {
		if hd.Get(k) != "" {
			t.Errorf("client header %s forwarded", k)
		}
	}
	if hd.Get("User-Agent") != "duo-confidential" || hd.Get("Authorization") != "Bearer pm-api-key" {
		t.Errorf("identity headers: UA %q auth %q", hd.Get("User-Agent"), hd.Get("Authorization"))
	}
	s1 := secretN(1)
	if hd.Get("Privatemode-Secret-ID") != s1.ID || hd.Get("Privatemode-Target-Model") != "m" || hd.Get("Privatemode-Version") != ProtocolVersion {
		t.Errorf("privatemode headers: %v", hd)
	}
	if !envelope.VerifyOCSPMAC(s1.Key, hd.Get("Privatemode-NVIDIA-OCSP-Policy"), hd.Get("Privatemode-NVIDIA-OCSP-Policy-MAC")) {
		t.Error("OCSP policy MAC does not verify")
	}
	if !strings.HasPrefix(hd.Get("Privatemode-User-Request-ID"), "proxy_") {
		t.Errorf("request id %q", hd.Get("Privatemode-User-Request-ID"))
	}
	if !strings.HasPrefix(h.be.hosts[0], "127.0.0.1:") || strings.Contains(h.be.hosts[0], strings.TrimPrefix(h.url, "http://")) {
		t.Errorf("Host %q is not the upstream's", h.be.hosts[0])
	}
	if hd.Get("Privatemode-OS") != "" || hd.Get("Privatemode-Architecture") != "" {
		t.Error("platform headers sent although not enabled")
	}
	if hd.Get("Privatemode-Shard-Key") != "" {
		t.Error("shard key sent for a per-request salt")
	}
}

func TestStreamRelay(t *testing.T) {
	h := newHarness(t, nil)
	status, hdr, body := h.do(t, "POST", "/v1/chat/completions", chatBody(true), nil)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d %v", status, hdr)
	}
	var data []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if len(data) != 6 || data[5] != "[DONE]" || !strings.Contains(data[4], `"finish_reason":"stop"`) || !strings.Contains(data[0], `"t0 "`) {
		t.Fatalf("relayed events: %q", data)
	}
}

func TestStreamFailuresEndWithErrorEvent(t *testing.T) {
	for mode, want := range map[string]string{
		"truncate":      "ended before it was complete",
		"garbage-chunk": "failed decryption",
		"stall":         "stopped sending",
	} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.StreamIdleTimeout = 300 * time.Millisecond })
			h.be.mode = mode
			status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(true), nil)
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			lines := strings.Split(strings.TrimSpace(body), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, `data: {"error":`) || !strings.Contains(last, want) {
				t.Fatalf("stream did not end with the error event (%q):\n%s", want, body)
			}
			if strings.Contains(body, "[DONE]") {
				t.Fatal("a failed stream claimed [DONE]")
			}
		})
	}
}

func TestUpstreamAnswers(t *testing.T) {
	tests := []struct {
		mode       string
		wantStatus int
		wantType   string
		wantMsg    string
	}{
		{"plaintext-200", 502, errUpstream, "without encryption"},
		{"401", 502, errUpstream, "API key"},
		{"429", 429, errRateLimit, "rate limit"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.be.mode = tc.mode
			status, hdr, body := h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil)
			wantOpenAIError(t, status, body, tc.wantStatus, tc.wantType, tc.wantMsg)
			if strings.Contains(body, "injected") {
				t.Fatal("unencrypted upstream content reached the client")
			}
			if tc.mode == "429" && hdr.Get("Retry-After") != "7" {
				t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
			}
		})
	}
}

func TestNoSecretForIDRetriesWithNewSecret(t *testing.T) {
	h := newHarness(t, nil)
	h.be.mode = "no-secret-once"
	status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil)
	if status != 200 || !strings.Contains(body, canary) {
		t.Fatalf("status %d body %s", status, body)
	}
	if h.secrets.invalidated.Load() != 1 || h.be.calls.Load() != 2 {
		t.Fatalf("invalidated %d, upstream calls %d; want 1 and 2", h.secrets.invalidated.Load(), h.be.calls.Load())
	}
	if got := h.be.headers[1].Get("Privatemode-Secret-ID"); got != secretN(2).ID {
		t.Errorf("retry used secret %q", got)
	}
}

func TestInboundErrors(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		tok, _ := bearer.ParseDigests([]string{bearer.Digest("good-token")})
		o.Tokens = tok
		o.MaxRequestBody = 4096
	})
	auth := map[string]string{"Authorization": "Bearer good-token"}
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		typ, msg                 string
	}{
		{"no token", "POST", "/v1/chat/completions", chatBody(false), nil, 401, errInvalidRequest, "bearer token"},
		{"wrong token", "POST", "/v1/chat/completions", chatBody(false), map[string]string{"Authorization": "Bearer nope"}, 401, errInvalidRequest, "bearer token"},
		{"unknown route", "POST", "/v1/responses", "{}", auth, 404, errNotFound, "unknown request URL"},
		{"wrong method", "GET", "/v1/chat/completions", "", auth, 405, errInvalidRequest, "not allowed"},
		{"not JSON", "POST", "/v1/chat/completions", "{", auth, 400, errInvalidRequest, "not valid JSON"},
		{"array body", "POST", "/v1/chat/completions", "[]", auth, 400, errInvalidRequest, "JSON object"},
		{"no model", "POST", "/v1/chat/completions", `{"messages":[]}`, auth, 400, errInvalidRequest, "'model'"},
		{"short cache salt", "POST", "/v1/chat/completions", `{"model":"m","cache_salt":"short"}`, auth, 400, errInvalidRequest, "cache_salt"},
		{"duplicate key", "POST", "/v1/chat/completions", `{"model":"m","model":"n"}`, auth, 400, errInvalidRequest, "duplicated"},
		{"too large", "POST", "/v1/chat/completions", `{"model":"m","x":"` + strings.Repeat("a", 5000) + `"}`, auth, 413, errInvalidRequest, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := h.do(t, tc.method, tc.path, tc.body, tc.hdr)
			wantOpenAIError(t, status, body, tc.status, tc.typ, tc.msg)
		})
	}
	if n := h.be.calls.Load(); n != 0 {
		t.Fatalf("refused requests reached the backend %d times", n)
	}
}

func TestNotReadyRefusesWithoutSending(t *testing.T) {
	h := newHarness(t, nil)
	h.secrets.notReady = errors.New("attestation rejected: measurement: MRTD")
	status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil)
	wantOpenAIError(t, status, body, 503, errUnavailable, "not available")
	if strings.Contains(body, "MRTD") {
		t.Error("internal reason leaked to the client")
	}
	if h.be.calls.Load() != 0 {
		t.Fatal("a request went upstream without a secret")
	}
}

func TestModels(t *testing.T) {
	h := newHarness(t, nil)
	status, _, body := h.do(t, "GET", "/v1/models", "", nil)
	if status != 200 || !strings.Contains(body, `"tasks"`) {
		t.Fatalf("status %d body %s", status, body)
	}
}

func TestNewRefusesPlainHTTPUpstream(t *testing.T) {
	if _, err := New(Options{Upstream: "http://example.com", Secrets: &fakeSecrets{}}); err == nil {
		t.Fatal("plain-http upstream accepted outside sandbox mode")
	}
	if _, err := New(Options{Upstream: "https://api.example", Secrets: &fakeSecrets{}, CacheSaltMode: CacheSaltShared, SharedSalt: "short"}); err == nil {
		t.Fatal("short shared salt accepted")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	h := newHarness(t, nil)
	if status, _, body := h.do(t, "GET", "/healthz", "", nil); status != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz %d %s", status, body)
	}
	if status, _, body := h.do(t, "GET", "/readyz", "", nil); status != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz %d %s", status, body)
	}
	h.secrets.notReady = errors.New("waiting for first attestation")
	status, _, body := h.do(t, "GET", "/readyz", "", nil)
	if status != 503 || !strings.Contains(body, "waiting for first attestation") {
		t.Fatalf("readyz not ready: %d %s", status, body)
	}
}

func TestOCSPPolicyMovesWithTheClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	if got := ocspPolicy(false, now).Header(); got != "rules=allow-good,allow-revoked,allow-unknown; revocation-time-not-before=1799827200" {
		t.Errorf("default policy %q", got)
	}
	if got := ocspPolicy(true, now).Header(); got != "rules=allow-good; revocation-time-not-before=1800000000" {
		t.Errorf("strict policy %q", got)
	}
}

func TestPlatformHeadersOptIn(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.PlatformHeaders = true })
	if status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil); status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	if hd := h.be.headers[0]; hd.Get("Privatemode-OS") != runtime.GOOS || hd.Get("Privatemode-Architecture") != runtime.GOARCH {
		t.Fatalf("platform headers %q %q", hd.Get("Privatemode-OS"), hd.Get("Privatemode-Architecture"))
	}
}
