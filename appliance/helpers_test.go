package appliance_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// waitLimit bounds every wait in these tests: readiness, requests, drains.
const waitLimit = 20 * time.Second

// envOptions shape one sandbox + appliance pair.
type envOptions struct {
	Platform          string        // tdx (default) or sev-snp
	StreamIdleTimeout time.Duration // 0: the configuration default
	UpstreamTimeout   time.Duration // 0: the configuration default
	FaultDelay        time.Duration // the sandbox's FaultDelay (0: its default)
	TokensPerSecond   float64
	// DeferSandbox reserves the sandbox's address but does not serve it
	// until startSandbox: the backend is down when the appliance starts.
	DeferSandbox bool
	// NoWait returns before the appliance is ready.
	NoWait bool
	// Receipts sets receipts.on_failure ("": the default) and how receipt
	// files are opened (nil: the file system).
	ReceiptsOnFailure string
	ReceiptFiles      func(path string) (receipts.File, error)
}

// env is a sandbox backend and an appliance in sandbox mode in front of it,
// both on loopback.
type env struct {
	t      *testing.T
	sb     *sandbox.Server
	sbAddr string
	app    *appliance.Appliance
	base   string // http://127.0.0.1:port of the proxy
	logs   *testutil.LogBuffer
	http   *http.Client

	sbOnce sync.Once
	// stop cancels Run and waits for it (once); the test's cleanup calls it too.
	stop func() error
}

// startEnv starts a sandbox and an appliance trusting it, and waits until
// the appliance is ready (unless NoWait or DeferSandbox). Everything is
// stopped when the test ends.
func startEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{
		Platform:        o.Platform,
		FaultDelay:      o.FaultDelay,
		TokensPerSecond: o.TokensPerSecond,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, sb: sb, sbAddr: sln.Addr().String(), logs: &testutil.LogBuffer{}}
	if o.DeferSandbox {
		// Free the port now and take it again in startSandbox.
		_ = sln.Close()
	} else {
		e.serveSandbox(sln)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_ = sb.Shutdown(ctx)
	})

	trust, err := appliance.SandboxFor(sb, "http://"+e.sbAddr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	// These tests speak plain HTTP; tls_test.go covers the listeners' TLS.
	cfg.TLS.Source = apptls.SourceOff
	if o.StreamIdleTimeout > 0 {
		cfg.Proxy.StreamIdleTimeout = o.StreamIdleTimeout
	}
	if o.UpstreamTimeout > 0 {
		cfg.Proxy.UpstreamTimeout = o.UpstreamTimeout
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.ReceiptsOnFailure != "" {
		cfg.Receipts.OnFailure = o.ReceiptsOnFailure
	}
	app, err := appliance.New(appliance.Options{Config: cfg, Logger: log, Version: "test", Sandbox: trust, APIKey: "sandbox-api-key",
		ReceiptFiles: o.ReceiptFiles})
	if err != nil {
		t.Fatal(err)
	}
	e.app = app
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + ln.Addr().String()
	e.http = &http.Client{Timeout: waitLimit, Transport: &http.Transport{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, ln, 5*time.Second) }()
	var stopOnce sync.Once
	var stopErr error
	e.stop = func() error {
		stopOnce.Do(func() {
			e.http.CloseIdleConnections()
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(waitLimit):
				stopErr = errors.New("appliance did not stop")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("appliance Run: %v", err)
		}
	})
	if !o.NoWait && !o.DeferSandbox {
		e.waitReady()
	}
	return e
}

// serveSandbox serves the sandbox on ln.
func (e *env) serveSandbox(ln net.Listener) {
	e.sbOnce.Do(func() {
		go func() { _ = e.sb.Serve(ln) }()
	})
}

// startSandbox starts the deferred sandbox on its reserved address.
func (e *env) startSandbox() {
	e.t.Helper()
	ln, err := net.Listen("tcp", e.sbAddr)
	if err != nil {
		e.t.Fatalf("the sandbox's address %s was taken meanwhile: %v", e.sbAddr, err)
	}
	e.serveSandbox(ln)
}

// waitReady polls the appliance's readiness until the deadline.
func (e *env) waitReady() {
	e.t.Helper()
	e.waitFor("the appliance to become ready", func() bool { ok, _ := e.app.Ready(); return ok })
}

// waitFor polls cond every few milliseconds until it holds or waitLimit
// passes (then the test fails, naming what it waited for).
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			_, reason := e.app.Ready()
			e.t.Fatalf("timed out waiting for %s (readiness: %s)", what, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client returns an OpenAI SDK client for the proxy. It never retries, so
// faults reach the test instead of being hidden.
func (e *env) client(opts ...option.RequestOption) openai.Client {
	base := []option.RequestOption{
		option.WithBaseURL(e.base + "/v1/"),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0),
		option.WithHTTPClient(e.http),
	}
	return openai.NewClient(append(base, opts...)...)
}

// ctx is a per-call context bounded by waitLimit.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	e.t.Cleanup(cancel)
	return ctx
}

// response is one raw HTTP exchange with the proxy.
type response struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to the proxy's path as JSON (or contentType).
func (e *env) post(path, body string, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return e.do(req)
}

func (e *env) get(path string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// apiError decodes an OpenAI-shaped error body; it fails the test if the
// body is not one.
func (r response) apiError(t *testing.T) (msg, typ string) {
	t.Helper()
	var v struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Error == nil || v.Error.Message == "" {
		t.Fatalf("HTTP %d body is not an OpenAI error: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	return v.Error.Message, v.Error.Type
}

// wantError checks status and that the OpenAI error message contains each
// of want.
func (r response) wantError(t *testing.T, status int, want ...string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("HTTP %d, want %d: %s", r.status, status, r.body)
	}
	msg, _ := r.apiError(t)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error message %q lacks %q", msg, w)
		}
	}
	return msg
}

// sseEvent is one event of a raw event stream.
type sseEvent struct {
	event string
	data  string
}

// parseSSE splits a complete event-stream body into events.
func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" || cur.event != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event:"):
			cur.event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			d := strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			if cur.data != "" {
				cur.data += "\n"
			}
			cur.data += d
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the event stream: %v", err)
	}
	if cur.data != "" || cur.event != "" {
		out = append(out, cur)
	}
	return out
}

// streamError returns the message of an OpenAI error event in events, and
// whether there is one.
func streamError(events []sseEvent) (string, bool) {
	for _, ev := range events {
		var v struct {
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal([]byte(ev.data), &v) == nil && v.Error != nil {
			return v.Error.Message, true
		}
	}
	return "", false
}

func hasDone(events []sseEvent) bool {
	for _, ev := range events {
		if ev.data == "[DONE]" {
			return true
		}
	}
	return false
}

// chatBody is a chat request for the sandbox chat model.
func chatBody(content string, stream bool, maxTokens int) string {
	b, _ := json.Marshal(map[string]any{
		"model":      sandbox.ModelChat,
		"messages":   []map[string]string{{"role": "user", "content": content}},
		"stream":     stream,
		"max_tokens": maxTokens,
	})
	return string(b)
}

// chatOK sends a chat request and checks the sandbox answered it through
// the proxy: the proxy has recovered from whatever happened before.
func (e *env) chatOK(t *testing.T, what string) {
	t.Helper()
	r := e.post("/v1/chat/completions", chatBody("recovered after "+what, false, 6))
	if r.status != http.StatusOK {
		t.Fatalf("request after %s: HTTP %d: %s", what, r.status, r.body)
	}
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.body, &c); err != nil || len(c.Choices) != 1 ||
		!strings.HasPrefix(c.Choices[0].Message.Content, "Sandbox reply to: recovered after") {
		t.Fatalf("request after %s: unexpected answer %s", what, r.body)
	}
	// And a stream, which must complete.
	r = e.post("/v1/chat/completions", chatBody("stream after "+what, true, 5))
	evs := parseSSE(t, r.body)
	if r.status != http.StatusOK || !hasDone(evs) {
		t.Fatalf("stream after %s: HTTP %d, [DONE] %v: %s", what, r.status, hasDone(evs), r.body)
	}
	if msg, ok := streamError(evs); ok {
		t.Fatalf("stream after %s ended with an error event: %s", what, msg)
	}
}

// inferenceRequests returns the sandbox's recorded requests to path after
// sequence number after.
func (e *env) inferenceRequests(path string, after uint64) []sandbox.RecordedRequest {
	var out []sandbox.RecordedRequest
	for _, r := range e.sb.Requests() {
		if r.Seq > after && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// lastSeq is the sandbox's latest recorded request number.
func (e *env) lastSeq() uint64 {
	rs := e.sb.Requests()
	if len(rs) == 0 {
		return 0
	}
	return rs[len(rs)-1].Seq
}

// asAPIError unwraps an SDK error.
func asAPIError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T) is not an *openai.Error", err, err)
	}
	return apiErr
}
