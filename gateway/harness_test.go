package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/jwks"
)

// fakeModel plays the proxy: Reply decides the answer to each call, and
// every request is recorded for assertions.
type fakeModel struct {
	mu    sync.Mutex
	chats []model.ChatRequest
	comps []model.CompletionRequest
	// Reply returns the text (streamed as Deltas, if set) or an error.
	Reply  func(req any) (string, error)
	Deltas func(req any) []string
	// Hold, if set, runs first in every call with the call's context.
	Hold func(ctx context.Context) error
}

func (f *fakeModel) hold(ctx context.Context) error {
	if f.Hold == nil {
		return nil
	}
	return f.Hold(ctx)
}

func (f *fakeModel) reply(req any) (model.Result, error) {
	text := "ok"
	var err error
	if f.Reply != nil {
		text, err = f.Reply(req)
	}
	if err != nil {
		return model.Result{}, err
	}
	return model.Result{Model: "fake", Text: text, FinishReason: "stop", Usage: model.Usage{PromptTokens: 10, CompletionTokens: 3}}, nil
}

func (f *fakeModel) stream(req any, onDelta func(string) error) (model.Result, error) {
	res, err := f.reply(req)
	if err != nil {
		return res, err
	}
	parts := []string{res.Text}
	if f.Deltas != nil {
		parts = f.Deltas(req)
		res.Text = strings.Join(parts, "")
	}
	for _, p := range parts {
		if err := onDelta(p); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (f *fakeModel) Chat(ctx context.Context, r model.ChatRequest) (model.Result, error) {
	if err := f.hold(ctx); err != nil {
		return model.Result{}, err
	}
	f.mu.Lock()
	f.chats = append(f.chats, r)
	f.mu.Unlock()
	return f.reply(r)
}

func (f *fakeModel) ChatStream(ctx context.Context, r model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	if err := f.hold(ctx); err != nil {
		return model.Result{}, err
	}
	f.mu.Lock()
	f.chats = append(f.chats, r)
	f.mu.Unlock()
	return f.stream(r, onDelta)
}

func (f *fakeModel) Complete(ctx context.Context, r model.CompletionRequest) (model.Result, error) {
	if err := f.hold(ctx); err != nil {
		return model.Result{}, err
	}
	f.mu.Lock()
	f.comps = append(f.comps, r)
	f.mu.Unlock()
	return f.reply(r)
}

func (f *fakeModel) CompleteStream(ctx context.Context, r model.CompletionRequest, onDelta func(string) error) (model.Result, error) {
	if err := f.hold(ctx); err != nil {
		return model.Result{}, err
	}
	f.mu.Lock()
	f.comps = append(f.comps, r)
	f.mu.Unlock()
	return f.stream(r, onDelta)
}

// lastChat returns the last chat request the model got.
func (f *fakeModel) lastChat(t *testing.T) model.ChatRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.chats) == 0 {
		t.Fatal("the model got no chat request")
	}
	return f.chats[len(f.chats)-1]
}

// calls counts model calls of either kind.
func (f *fakeModel) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.chats) + len(f.comps)
}

// harness is a gateway on loopback with a demo GitLab, real JWKS fetching
// and real keys, and a fake model.
type harness struct {
	t      *testing.T
	s      *Server
	url    string
	gitlab *gitlabtest.Issuer
	jwks   *jwks.Set
	keys   *keys.Store
	model  *fakeModel
	models *Models
	hc     *http.Client
}

type harnessOptions struct {
	models  *Models
	options func(*Options)
}

func newHarness(t *testing.T, ho harnessOptions) *harness {
	t.Helper()
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gl := httptest.NewTLSServer(iss.Handler())
	t.Cleanup(gl.Close)
	iss.SetURL(gl.URL)
	set, err := jwks.New(jwks.Options{IssuerURL: gl.URL, HTTPClient: gl.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = set.Run(ctx) }()
	store, err := keys.Open(t.TempDir(), keys.Options{Bits: keys.MinBits})
	if err != nil {
		t.Fatal(err)
	}
	v, signer, err := NewAuth(AuthOptions{GitLabURL: gl.URL, GitLabKeys: set, Local: store})
	if err != nil {
		t.Fatal(err)
	}
	ms := ho.models
	if ms == nil {
		ms = &Models{Default: "chat-model", ByFeature: map[prompts.Feature]string{prompts.CodeCompletions: "code-model"}}
	}
	fm := &fakeModel{}
	o := Options{
		Validator: v, Model: fm, Models: ms, Signer: signer, LocalJWKS: store.PublicJWKS,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if ho.options != nil {
		ho.options(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	addr := testutil.ServeLoopback(t, s.Serve, s.Shutdown)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	h := &harness{t: t, s: s, url: "http://" + addr, gitlab: iss, jwks: set, keys: store,
		model: fm, models: ms, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	h.waitKeys()
	return h
}

// waitKeys waits for the first JWKS fetch (it runs in the background).
func (h *harness) waitKeys() {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !h.jwks.Ready() {
		if time.Now().After(deadline) {
			h.t.Fatalf("GitLab keys not loaded: %+v", h.jwks.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// headers returns Rails' headers with a fresh instance token.
func (h *harness) headers(o gitlabtest.TokenOptions) http.Header {
	h.t.Helper()
	tok, err := h.gitlab.Token(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.gitlab.Headers(tok, o)
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; hdr nil means Rails' default headers and token.
func (h *harness) do(method, path, body string, hdr http.Header) response {
	h.t.Helper()
	if hdr == nil {
		hdr = h.headers(gitlabtest.TokenOptions{})
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// post sends body with Rails' default headers.
func (h *harness) post(path, body string) response {
	h.t.Helper()
	return h.do(http.MethodPost, path, body, nil)
}

// lines splits an ndjson or raw body into non-empty lines.
func lines(b []byte) []string {
	var out []string
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}

// addr is the gateway's host:port.
func (h *harness) addr() string { return strings.TrimPrefix(h.url, "http://") }
