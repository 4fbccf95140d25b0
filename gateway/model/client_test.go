package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// guard bounds waits that only a bug would make long; no test asserts a
// duration.
const guard = 10 * time.Second

// proxyStub is an in-memory stand-in for the attesting proxy.
type proxyStub struct {
	client *Client
	conns  atomic.Int32 // connections the server accepted
}

func newStub(t testing.TB, h http.HandlerFunc, o Options) *proxyStub {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	p := &proxyStub{}
	srv := &http.Server{
		Handler: h,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				p.conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	if o.Dial == nil {
		o.Dial = func(context.Context) (net.Conn, error) { return ln.Dial() }
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	p.client = c
	t.Cleanup(func() { c.Close(); srv.Close() })
	return p
}

// sentRequest is what the stub saw of one request.
type sentRequest struct {
	Method, Path string
	Header       http.Header
	Body         map[string]any
}

func record(t testing.TB, into *sentRequest, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Error(err)
	}
	*into = sentRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &into.Body); err != nil {
			t.Errorf("request body %q: %v", b, err)
		}
	}
}

func writeSSE(w http.ResponseWriter, events ...string) {
	for _, e := range events {
		fmt.Fprintf(w, "data: %s\n\n", e)
	}
	w.(http.Flusher).Flush()
}

func sseHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
}

func temp(f float64) *float64 { return &f }

func TestUnary(t *testing.T) {
	suffix := "}"
	tests := []struct {
		name     string
		call     func(*Client) (Result, error)
		path     string
		answer   string
		want     Result
		wantBody map[string]any
	}{
		{
			name: "chat",
			call: func(c *Client) (Result, error) {
				return c.Chat(context.Background(), ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}, MaxTokens: 5, Temperature: temp(0)})
			},
			path:   "/v1/chat/completions",
			answer: `{"id":"x","model":"m-1","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`,
			want:   Result{Model: "m-1", Text: "hello", FinishReason: "stop", Usage: Usage{3, 1}},
			wantBody: map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "hi"}},
				"max_tokens": 5.0, "temperature": 0.0, "stream": false},
		},
		{
			name: "chat null content",
			call: func(c *Client) (Result, error) { return c.Chat(context.Background(), ChatRequest{Model: "m"}) },
			path: "/v1/chat/completions", answer: `{"model":"m","choices":[{"message":{"content":null},"finish_reason":null}]}`,
			want:     Result{Model: "m"},
			wantBody: map[string]any{"model": "m", "messages": nil, "stream": false},
		},
		{
			name: "chat zero choices",
			call: func(c *Client) (Result, error) { return c.Chat(context.Background(), ChatRequest{Model: "m"}) },
			path: "/v1/chat/completions", answer: `{"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0}}`,
			want:     Result{Model: "m", Usage: Usage{PromptTokens: 1}},
			wantBody: map[string]any{"model": "m", "messages": nil, "stream": false},
		},
		{
			name: "completion",
			call: func(c *Client) (Result, error) {
				return c.Complete(context.Background(), CompletionRequest{Model: "m", Prompt: "func f() {", Suffix: &suffix, Stop: []string{"\n\n"}})
			},
			path:   "/v1/completions",
			answer: `{"model":"m","choices":[{"index":0,"text":" return 1 ","finish_reason":"length"}],"usage":{"prompt_tokens":7,"completion_tokens":4}}`,
			want:   Result{Model: "m", Text: " return 1 ", FinishReason: "length", Usage: Usage{7, 4}},
			wantBody: map[string]any{"model": "m", "prompt": "func f() {", "suffix": "}",
				"stop": []any{"\n\n"}, "stream": false},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got sentRequest
			p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
				record(t, &got, r)
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tc.answer)
			}, Options{Token: "tok"})
			res, err := tc.call(p.client)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res, tc.want) {
				t.Errorf("result %+v, want %+v", res, tc.want)
			}
			if got.Method != http.MethodPost || got.Path != tc.path {
				t.Errorf("request %s %s, want POST %s", got.Method, got.Path, tc.path)
			}
			checkHeaders(t, got.Header, "application/json", "Bearer tok", true)
			if !jsonEqual(got.Body, tc.wantBody) {
				t.Errorf("body %v, want %v", got.Body, tc.wantBody)
			}
		})
	}
}

func checkHeaders(t *testing.T, h http.Header, accept, auth string, body bool) {
	t.Helper()
	want := map[string]string{"Accept": accept, "Authorization": auth}
	if body {
		want["Content-Type"] = "application/json"
		want["Content-Length"] = h.Get("Content-Length")
	}
	for k, v := range want {
		if v == "" {
			continue
		}
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	for k := range h {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected header %s: %q", k, h[k])
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestNoTokenNoAuthorization(t *testing.T) {
	var got sentRequest
	p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		record(t, &got, r)
		io.WriteString(w, `{"data":[{"id":"a","object":"model"},{"id":"b"}]}`)
	}, Options{})
	ids, err := p.client.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "a,b" {
		t.Errorf("ids %q", ids)
	}
	if got.Method != http.MethodGet || got.Path != "/v1/models" {
		t.Errorf("request %s %s", got.Method, got.Path)
	}
	checkHeaders(t, got.Header, "application/json", "", false)
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		retryAfter  string
		body        string
		want        Error
		wantRetry   bool
		contentType string
	}{
		{
			name: "openai error", status: 400,
			body: `{"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":null,"code":null}}`,
			want: Error{Status: 400, Type: "invalid_request_error", Message: "max_tokens is too large"},
		},
		{
			name: "rate limit with retry-after", status: 429, retryAfter: "7",
			body:      `{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}`,
			want:      Error{Status: 429, Type: "rate_limit_error", Message: "slow down", RetryAfter: 7 * time.Second},
			wantRetry: true,
		},
		{
			name: "code stands in for a missing type", status: 401,
			body: `{"error":{"message":"bad token","code":"invalid_api_key"}}`,
			want: Error{Status: 401, Type: "invalid_api_key", Message: "bad token"},
		},
		{
			name: "numeric code", status: 503, retryAfter: "junk",
			body:      `{"error":{"message":"loading","type":"service_unavailable","code":503}}`,
			want:      Error{Status: 503, Type: "service_unavailable", Message: "loading"},
			wantRetry: true,
		},
		{
			name: "junk body", status: 502, body: `<html>bad gateway</html>`,
			want: Error{Status: 502, Message: "Bad Gateway"}, wantRetry: true,
		},
		{
			name: "other json shape", status: 500, body: `{"detail":"boom"}`,
			want: Error{Status: 500, Message: "Internal Server Error"},
		},
		{
			name: "error is a string", status: 404, body: `{"error":"nope"}`,
			want: Error{Status: 404, Message: "Not Found"},
		},
		{
			name: "huge body", status: 500, body: `{"error":{"message":"` + strings.Repeat("x", maxErrorBodyBytes) + `"}}`,
			want: Error{Status: 500, Message: "Internal Server Error"},
		},
		{
			name: "redirect is not followed", status: 307, body: ``,
			want: Error{Status: 307, Message: "Temporary Redirect"},
		},
		{
			name: "unknown status", status: 599, body: ``,
			want: Error{Status: 599, Message: "status 599"},
		},
	}
	calls := []struct {
		name string
		call func(*Client) error
	}{
		{"Chat", func(c *Client) error { _, err := c.Chat(context.Background(), ChatRequest{Model: "m"}); return err }},
		{"Complete", func(c *Client) error {
			_, err := c.Complete(context.Background(), CompletionRequest{Model: "m"})
			return err
		}},
		{"ChatStream", func(c *Client) error {
			_, err := c.ChatStream(context.Background(), ChatRequest{Model: "m"}, nil)
			return err
		}},
		{"CompleteStream", func(c *Client) error {
			_, err := c.CompleteStream(context.Background(), CompletionRequest{Model: "m"}, nil)
			return err
		}},
		{"Models", func(c *Client) error { _, err := c.Models(context.Background()); return err }},
	}
	for _, tc := range tests {
		p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if tc.retryAfter != "" {
				w.Header().Set("Retry-After", tc.retryAfter)
			}
			if tc.status/100 == 3 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}, Options{})
		for _, cl := range calls {
			t.Run(tc.name+"/"+cl.name, func(t *testing.T) {
				err := cl.call(p.client)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v (%T), want *Error", err, err)
				}
				if *e != tc.want {
					t.Errorf("error %+v, want %+v", *e, tc.want)
				}
				if e.Retryable() != tc.wantRetry {
					t.Errorf("Retryable() = %v", e.Retryable())
				}
			})
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {" 12 ", 12 * time.Second}, {"-3", 0}, {"1.5", 0}, {"abc", 0},
		{"99999999999999999999", 24 * time.Hour}, {"100000", 24 * time.Hour},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestUnaryBadAnswers(t *testing.T) {
	tests := []struct {
		name, body string
		want       string
	}{
		{"not json", `{"choices":`, "the model's answer is not valid JSON"},
		{"too large", `{"model":"` + strings.Repeat("x", 200) + `"}`, "the model's answer exceeds 100 bytes"},
	}
	for _, tc := range tests {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", tc.name, chunked), func(t *testing.T) {
				p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
					if !chunked {
						w.Header().Set("Content-Length", fmt.Sprint(len(tc.body)))
					}
					io.WriteString(w, tc.body[:len(tc.body)/2])
					w.(http.Flusher).Flush()
					io.WriteString(w, tc.body[len(tc.body)/2:])
				}, Options{MaxResponseBytes: 100})
				_, err := p.client.Chat(context.Background(), ChatRequest{Model: "m"})
				var e *Error
				if !errors.As(err, &e) || e.Status != 502 || e.Message != tc.want {
					t.Fatalf("error %v, want 502 %q", err, tc.want)
				}
			})
		}
	}
}

func TestReadBoundedExact(t *testing.T) {
	for _, hint := range []int64{-1, 10} {
		b, err := readBounded(strings.NewReader("0123456789"), 10, nil, hint)
		if err != nil || string(b) != "0123456789" {
			t.Errorf("hint %d: %q, %v", hint, b, err)
		}
		_, err = readBounded(strings.NewReader("0123456789x"), 10, nil, hint)
		if !errors.Is(err, errTooLarge) {
			t.Errorf("hint %d: one byte over the limit: %v", hint, err)
		}
	}
}

func TestStreams(t *testing.T) {
	chatOK := []string{
		`{"model":"m-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"model":"m-1","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`,
		`{"model":"m-1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null}`,
		`{"model":"m-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
		`{"model":"m-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`,
		`[DONE]`,
	}
	tests := []struct {
		name       string
		legacy     bool
		events     []string
		raw        string // written after events, as is
		wantDeltas []string
		want       Result
		wantErr    *Error
	}{
		{
			name: "chat with usage", events: chatOK,
			wantDeltas: []string{"Hel", "lo"},
			want:       Result{Model: "m-1", Text: "Hello", FinishReason: "stop", Usage: Usage{9, 2}},
		},
		{
			name: "legacy with usage", legacy: true,
			events: []string{
				`{"model":"m","choices":[{"index":0,"text":"a","finish_reason":null}]}`,
				`{"model":"m","choices":[{"index":0,"text":"","finish_reason":null}]}`,
				`{"model":"m","choices":[{"index":0,"text":"b","finish_reason":"length"}]}`,
				`{"model":"m","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}`,
				`[DONE]`,
			},
			wantDeltas: []string{"a", "b"},
			want:       Result{Model: "m", Text: "ab", FinishReason: "length", Usage: Usage{4, 2}},
		},
		{
			name: "comments, CRLF and other choices are skipped",
			raw: ": ping\r\n\r\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"no\"}}]}\r\n\r\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"yes\"},\"finish_reason\":\"stop\"}]}\r\n\r\n" +
				"data: [DONE]\r\n\r\n",
			wantDeltas: []string{"yes"},
			want:       Result{Text: "yes", FinishReason: "stop"},
		},
		{
			// Whatever follows [DONE] is not the answer to this request
			// (a relay splicing streams): the stream is not believed.
			name: "events after [DONE] are an error",
			events: []string{`{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}`, `[DONE]`,
				`{"choices":[{"delta":{"content":"spliced"}}]}`},
			wantDeltas: []string{"x"},
			want:       Result{Text: "x", FinishReason: "stop"},
			wantErr:    &Error{Status: 502, Type: "upstream_error", Message: "the model stream sent events after [DONE]"},
		},
		{
			// A relay that drops the last chunk but keeps [DONE].
			name:       "[DONE] without a finish reason",
			events:     chatOK[1:3:3],
			raw:        "data: [DONE]\n\n",
			wantDeltas: []string{"Hel", "lo"},
			want:       Result{Model: "m-1", Text: "Hello"},
			wantErr:    &Error{Status: 502, Type: "upstream_error", Message: "stream ended without a finish reason"},
		},
		{
			name:       "[DONE] missing",
			events:     chatOK[:len(chatOK)-1],
			wantDeltas: []string{"Hel", "lo"},
			want:       Result{Model: "m-1", Text: "Hello", FinishReason: "stop", Usage: Usage{9, 2}},
			wantErr:    &Error{Status: 502, Type: "upstream_error", Message: "stream ended before it was complete"},
		},
		{
			name:       "ends inside an event",
			events:     chatOK[:2],
			raw:        `data: {"choices":[{"delta":{"content":"lo"}}]}`,
			wantDeltas: []string{"Hel"},
			want:       Result{Model: "m-1", Text: "Hel"},
			wantErr:    &Error{Status: 502, Type: "upstream_error", Message: "stream ended before it was complete"},
		},
		{
			name: "error event mid-stream",
			events: append(chatOK[:3:3],
				`{"error":{"message":"the stream from the confidential backend broke off","type":"upstream_error","param":null,"code":null}}`),
			wantDeltas: []string{"Hel", "lo"},
			want:       Result{Model: "m-1", Text: "Hello"},
			wantErr:    &Error{Status: 502, Type: "upstream_error", Message: "the stream from the confidential backend broke off"},
		},
		{
			name:    "error event without type or message",
			events:  []string{`{"error":{}}`},
			wantErr: &Error{Status: 502, Type: "upstream_error", Message: "the model stream failed"},
		},
		{
			name:    "malformed event",
			events:  []string{`{"choices":[`},
			wantErr: &Error{Status: 502, Type: "upstream_error", Message: "the model stream sent a malformed event"},
		},
		{
			name:    "event too large",
			events:  []string{`{"choices":[{"delta":{"content":"` + strings.Repeat("x", 300) + `"}}]}`},
			wantErr: &Error{Status: 502, Type: "upstream_error", Message: "an event of the model stream exceeds 256 bytes"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got sentRequest
			p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
				record(t, &got, r)
				sseHeaders(w)
				writeSSE(w, tc.events...)
				io.WriteString(w, tc.raw)
			}, Options{Token: "tok", MaxEventBytes: 256})
			var deltas []string
			onDelta := func(s string) error { deltas = append(deltas, s); return nil }
			var res Result
			var err error
			path := "/v1/chat/completions"
			if tc.legacy {
				path = "/v1/completions"
				res, err = p.client.CompleteStream(context.Background(), CompletionRequest{Model: "m", Prompt: "p"}, onDelta)
			} else {
				res, err = p.client.ChatStream(context.Background(), ChatRequest{Model: "m"}, onDelta)
			}
			if tc.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != nil {
				var e *Error
				if !errors.As(err, &e) || *e != *tc.wantErr {
					t.Fatalf("error %#v, want %+v", err, *tc.wantErr)
				}
			}
			if !reflect.DeepEqual(res, tc.want) {
				t.Errorf("result %+v, want %+v", res, tc.want)
			}
			if strings.Join(deltas, "|") != strings.Join(tc.wantDeltas, "|") {
				t.Errorf("deltas %q, want %q", deltas, tc.wantDeltas)
			}
			if got.Path != path {
				t.Errorf("path %s, want %s", got.Path, path)
			}
			checkHeaders(t, got.Header, "text/event-stream", "Bearer tok", true)
			if got.Body["stream"] != true || !jsonEqual(got.Body["stream_options"], map[string]any{"include_usage": true}) {
				t.Errorf("body %v lacks the stream fields", got.Body)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/models" {
			io.WriteString(w, `{"data":[]}`)
			return
		}
		sseHeaders(w)
		writeSSE(w, `{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}`, `[DONE]`)
	}, Options{})
	for i := range 5 {
		if _, err := p.client.ChatStream(context.Background(), ChatRequest{Model: "m"}, nil); err != nil {
			t.Fatal(i, err)
		}
		if _, err := p.client.Models(context.Background()); err != nil {
			t.Fatal(i, err)
		}
	}
	if n := p.conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential calls, want 1", n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	// Requests share their URL and header maps; the race detector checks
	// that nothing writes to them.
	p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Stream   bool      `json:"stream"`
			Messages []Message `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		text := body.Messages[0].Content
		if body.Stream {
			sseHeaders(w)
			writeSSE(w, `{"choices":[{"delta":{"content":"`+text+`"},"finish_reason":"stop"}]}`, `[DONE]`)
			return
		}
		io.WriteString(w, `{"choices":[{"message":{"content":"`+text+`"}}]}`)
	}, Options{Token: "tok"})
	errs := make(chan error, 64)
	for i := range cap(errs) {
		go func() {
			want := fmt.Sprint("m", i)
			req := ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: want}}}
			var res Result
			var err error
			if i%2 == 0 {
				res, err = p.client.Chat(context.Background(), req)
			} else {
				res, err = p.client.ChatStream(context.Background(), req, nil)
			}
			if err == nil && res.Text != want {
				err = fmt.Errorf("call %d got %q", i, res.Text)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestOnDeltaErrorClosesStream(t *testing.T) {
	closed := make(chan struct{})
	p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		sseHeaders(w)
		writeSSE(w, `{"choices":[{"delta":{"content":"a"}}]}`, `{"choices":[{"delta":{"content":"b"}}]}`)
		select {
		case <-r.Context().Done():
			close(closed)
		case <-time.After(guard):
		}
	}, Options{})
	stop := errors.New("client went away")
	var deltas []string
	res, err := p.client.ChatStream(context.Background(), ChatRequest{Model: "m"}, func(s string) error {
		deltas = append(deltas, s)
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("error %v, want %v wrapped", err, stop)
	}
	if len(deltas) != 1 || res.Text != "a" {
		t.Errorf("deltas %q, text %q: the stream went on after the error", deltas, res.Text)
	}
	select {
	case <-closed:
	case <-time.After(guard):
		t.Fatal("the server never saw the connection close")
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	tests := []struct {
		name       string
		beforeHead bool
		wantText   string
	}{
		{name: "stall mid-stream", wantText: "a"},
		{name: "stall before the response", beforeHead: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			closed := make(chan struct{})
			p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if !tc.beforeHead {
					sseHeaders(w)
					writeSSE(w, `{"choices":[{"delta":{"content":"a"}}]}`)
				}
				select {
				case <-r.Context().Done():
					close(closed)
				case <-time.After(guard):
				}
			}, Options{StreamIdleTimeout: 50 * time.Millisecond})
			res, err := p.client.ChatStream(context.Background(), ChatRequest{Model: "m"}, nil)
			var e *Error
			if !errors.As(err, &e) || e.Status != 504 || e.Message != "the model stopped sending" || !e.Retryable() {
				t.Fatalf("error %v, want 504 the model stopped sending", err)
			}
			if res.Text != tc.wantText {
				t.Errorf("text %q, want %q", res.Text, tc.wantText)
			}
			select {
			case <-closed:
			case <-time.After(guard):
				t.Fatal("the server never saw the connection close")
			}
		})
	}
}

func TestContextEnds(t *testing.T) {
	type call func(ctx context.Context, c *Client, cancel func()) error
	unary := func(ctx context.Context, c *Client, _ func()) error {
		_, err := c.Chat(ctx, ChatRequest{Model: "m"})
		return err
	}
	stream := func(ctx context.Context, c *Client, cancel func()) error {
		_, err := c.ChatStream(ctx, ChatRequest{Model: "m"}, func(string) error { cancel(); return nil })
		return err
	}
	tests := []struct {
		name     string
		call     call
		deadline bool
		want     error
	}{
		{"unary cancel", unary, false, context.Canceled},
		{"unary deadline", unary, true, context.DeadlineExceeded},
		{"stream cancel in onDelta", stream, false, context.Canceled},
		{"stream deadline", stream, true, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				arrived <- struct{}{}
				if strings.Contains(tc.name, "stream") {
					sseHeaders(w)
					writeSSE(w, `{"choices":[{"delta":{"content":"a"}}]}`)
				}
				select {
				case <-r.Context().Done():
				case <-time.After(guard):
				}
			}, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			if tc.deadline {
				ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
			} else if !strings.Contains(tc.name, "stream") {
				go func() { <-arrived; cancel() }()
			}
			defer cancel()
			noop := func() {}
			if !tc.deadline {
				noop = cancel
			}
			err := tc.call(ctx, p.client, noop)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "call model: ") {
				t.Errorf("error %q not wrapped", err)
			}
			var e *Error
			if errors.As(err, &e) {
				t.Errorf("context end reported as *Error %+v", e)
			}
		})
	}
}

func TestAlreadyCancelled(t *testing.T) {
	p := newStub(t, func(w http.ResponseWriter, r *http.Request) { t.Error("request sent with a cancelled context") }, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.client.Chat(ctx, ChatRequest{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Chat: %v", err)
	}
	if _, err := p.client.ChatStream(ctx, ChatRequest{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("ChatStream: %v", err)
	}
}

func TestDialFailure(t *testing.T) {
	boom := errors.New("proxy not listening")
	c, err := New(Options{Dial: func(context.Context) (net.Conn, error) { return nil, boom }})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"Chat":       func() error { _, err := c.Chat(context.Background(), ChatRequest{}); return err },
		"ChatStream": func() error { _, err := c.ChatStream(context.Background(), ChatRequest{}, nil); return err },
		"Models":     func() error { _, err := c.Models(context.Background()); return err },
	} {
		err := call()
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "call model: ") {
			t.Errorf("%s: error %v, want %v wrapped", name, err, boom)
		}
	}
}

func TestNewValidates(t *testing.T) {
	dial := func(context.Context) (net.Conn, error) { return nil, errors.New("x") }
	for name, o := range map[string]Options{
		"no dial":          {},
		"token with CRLF":  {Dial: dial, Token: "a\r\nX-Evil: 1"},
		"token with a NUL": {Dial: dial, Token: "a\x00"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	c, err := New(Options{Dial: dial, MaxResponseBytes: -1, MaxEventBytes: -1, StreamIdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	if c.maxResp != defaultMaxResponseBytes || c.maxEvent != defaultMaxEventBytes || c.idle != defaultStreamIdleTimeout {
		t.Errorf("defaults not applied: %d %d %v", c.maxResp, c.maxEvent, c.idle)
	}
}

func TestEncodeError(t *testing.T) {
	c, err := New(Options{Dial: func(context.Context) (net.Conn, error) { t.Error("dialled"); return nil, errors.New("x") }})
	if err != nil {
		t.Fatal(err)
	}
	nan := temp(0)
	*nan = *nan / *nan
	if _, err := c.Chat(context.Background(), ChatRequest{Temperature: nan}); err == nil {
		t.Error("NaN temperature encoded")
	}
}

func TestApplyChunkReuse(t *testing.T) {
	// A reused chunk must not leak fields of the previous event.
	var ch chunk
	var res Result
	if d, err := applyChunk([]byte(`{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"},{"index":1,"text":"z"}]}`), false, &ch, &res); err != nil || d != "a" {
		t.Fatal(d, err)
	}
	d, err := applyChunk([]byte(`{"choices":[{"index":0},{"index":1}]}`), true, &ch, &res)
	if err != nil || d != "" {
		t.Errorf("delta %q, %v: stale text", d, err)
	}
	if ch.Choices[0].Delta.Content != "" || ch.Choices[0].FinishReason != "" || ch.Choices[1].Text != "" {
		t.Errorf("stale choices %+v", ch.Choices)
	}
}

// fastStub serves a canned chat answer from fasthttp, which allocates little
// itself, so the benchmark's allocations are mostly the client's.
func fastStub(b *testing.B, answer []byte, stream bool) *Client {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if stream {
			ctx.SetContentType("text/event-stream")
		} else {
			ctx.SetContentType("application/json")
		}
		ctx.SetBody(answer)
	}}
	go srv.Serve(ln)
	c, err := New(Options{Dial: func(context.Context) (net.Conn, error) { return ln.Dial() }, Token: "tok"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); ln.Close() })
	return c
}

func benchRequest() ChatRequest {
	return ChatRequest{Model: "qwen", MaxTokens: 256, Messages: []Message{
		{Role: "system", Content: strings.Repeat("You are a helpful coding assistant. ", 20)},
		{Role: "user", Content: strings.Repeat("Explain this function. ", 40)},
	}}
}

func BenchmarkChat(b *testing.B) {
	c := fastStub(b, []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"qwen","choices":[{"index":0,"message":{"role":"assistant","content":"`+
		strings.Repeat("This function adds two numbers. ", 10)+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":70,"total_tokens":370}}`), false)
	req := benchRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Chat(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChatStream(b *testing.B) {
	var sb strings.Builder
	for range 50 {
		sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}` + "\n\n")
	}
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[],"usage":{"prompt_tokens":300,"completion_tokens":50}}` + "\n\n")
	sb.WriteString("data: [DONE]\n\n")
	c := fastStub(b, []byte(sb.String()), true)
	req := benchRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ChatStream(ctx, req, func(string) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
