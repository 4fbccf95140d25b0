package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/duo-confidential/duo-confidential/jwks"
	"github.com/valyala/fasthttp"
)

// healthProbeBody is what GitLab's end-to-end health check posts (with a
// 3 s timeout), needing 200 and a non-empty choices[0].text.
const healthProbeBody = `{"prompt_version":1,"current_file":{"file_name":"test.rb","content_above_cursor":"def hello_world"}}`

// railsCompletionBody is a completion as Rails sends it for a self-hosted
// model (ee/lib/code_suggestions/prompts/code_completion/ai_gateway_code_completion_message.rb).
func railsCompletionBody(above, below string, extra map[string]any) string {
	body := map[string]any{
		"current_file":     map[string]any{"file_name": "app/models/user.rb", "content_above_cursor": above, "content_below_cursor": below},
		"intent":           "completion",
		"stream":           false,
		"project_path":     "group/project",
		"model_provider":   "litellm",
		"prompt_version":   2,
		"prompt":           nil,
		"model_endpoint":   "http://vllm.internal:8000/v1",
		"model_name":       "general",
		"model_api_key":    "secret-key",
		"model_identifier": "custom_openai/Qwen2.5-Coder",
		"telemetry":        []any{},
	}
	for k, v := range extra {
		body[k] = v
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// decodeV2 parses a /v2 answer.
func decodeV2(t *testing.T, b []byte) suggestionsResponse {
	t.Helper()
	var r suggestionsResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return r
}

func TestCompletionRequestToModel(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) { return "\n  puts 'Hello, world!'\nend", nil }
	huge := strings.Repeat("# filler line\n", 7000) + "def near_cursor\n  "
	tests := []struct {
		name, path, body string
		check            func(t *testing.T, r model.ChatRequest)
	}{
		{"GitLab health probe", "/v2/code/completions", healthProbeBody, func(t *testing.T, r model.ChatRequest) {
			u := userText(r)
			if !strings.Contains(u, "File: test.rb") || !strings.Contains(u, "Language: Ruby") || !strings.Contains(u, "def hello_world<CURSOR>") {
				t.Errorf("prompt:\n%s", u)
			}
		}},
		{"Rails body on the alias", "/v2/completions", railsCompletionBody("class User\n  def name\n    ", "\n  end\nend\n", nil), func(t *testing.T, r model.ChatRequest) {
			if u := userText(r); !strings.Contains(u, "  def name\n    <CURSOR>\n  end\nend") || !strings.Contains(u, "File: app/models/user.rb") {
				t.Errorf("prompt:\n%s", u)
			}
		}},
		{"huge prefix trimmed to the budget", "/v2/code/completions", railsCompletionBody(huge, strings.Repeat("x = 1\n", 16000), nil), func(t *testing.T, r model.ChatRequest) {
			u := userText(r)
			if !strings.Contains(u, "def near_cursor\n  <CURSOR>x = 1\n") {
				t.Errorf("the lines nearest the cursor are missing")
			}
			if n := len(u); n > 4*(prompts.DefaultBudget.Prefix+prompts.DefaultBudget.Suffix)+2000 {
				t.Errorf("prompt of %d bytes exceeds the budget", n)
			}
		}},
		{"context items as related code", "/v2/code/completions", railsCompletionBody("x = ", "", map[string]any{
			"context": []any{map[string]any{"type": "file", "name": "lib/helper.rb", "content": "def helper_method; end"}}}),
			func(t *testing.T, r model.ChatRequest) {
				if u := userText(r); !strings.Contains(u, "lib/helper.rb\ndef helper_method; end") {
					t.Errorf("context missing:\n%s", u)
				}
			}},
		{"prompt_version 3 with messages", "/v2/code/completions", railsCompletionBody("x = ", "", map[string]any{
			"prompt_version": 3, "prompt": []any{map[string]any{"role": "user", "content": "vendor prompt"}}}),
			func(t *testing.T, r model.ChatRequest) {
				if u := userText(r); strings.Contains(u, "vendor prompt") {
					t.Errorf("a vendor prompt reached the model:\n%s", u)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post(tc.path, tc.body)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			got := decodeV2(t, r.body)
			if len(got.Choices) != 1 || got.Choices[0].Text == "" {
				t.Fatalf("no suggestion: %s", r.body)
			}
			req := h.model.lastChat(t)
			if req.Model != "code-model" || req.MaxTokens != 128 || req.Temperature == nil || *req.Temperature != 0 || req.Stop != nil {
				t.Errorf("model request: model %q max_tokens %d temperature %v stop %q", req.Model, req.MaxTokens, req.Temperature, req.Stop)
			}
			if len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[1].Role != "user" {
				t.Errorf("messages: %+v", req.Messages)
			}
			tc.check(t, req)
			if strings.Contains(userText(req), "secret-key") {
				t.Error("the api key reached the model")
			}
		})
	}
}

func TestCompletionFIMFormats(t *testing.T) {
	for _, tc := range []struct {
		format prompts.FIMFormat
		check  func(t *testing.T, r model.CompletionRequest)
	}{
		{prompts.FIMQwen, func(t *testing.T, r model.CompletionRequest) {
			if !strings.HasPrefix(r.Prompt, "<|fim_prefix|>def add(a, b)\n  ") || !strings.HasSuffix(r.Prompt, "<|fim_suffix|>\nend\n<|fim_middle|>") ||
				r.Suffix != nil || len(r.Stop) == 0 || r.MaxTokens != 64 {
				t.Errorf("qwen request: %+v", r)
			}
		}},
		{prompts.FIMSuffixField, func(t *testing.T, r model.CompletionRequest) {
			if r.Prompt != "def add(a, b)\n  " || r.Suffix == nil || *r.Suffix != "\nend\n" {
				t.Errorf("suffix-field request: %+v", r)
			}
		}},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			h := newHarness(t, harnessOptions{models: &Models{Default: "fim-model", CompletionFormat: tc.format}})
			h.model.Reply = func(any) (string, error) { return "a + b<|endoftext|>", nil }
			r := h.post("/v2/code/completions", railsCompletionBody("def add(a, b)\n  ", "\nend\n", nil))
			if r.status != 200 || decodeV2(t, r.body).Choices[0].Text != "a + b" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			req := h.model.lastComp(t)
			if req.Model != "fim-model" || req.Temperature == nil {
				t.Errorf("model %q temperature %v", req.Model, req.Temperature)
			}
			tc.check(t, req)
		})
	}
}

func TestCompletionResponseGolden(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		name, reply, flags string
	}{
		{"v2_completion", "\n  puts 'Hello, world!'\nend", "flag_a, flag_b"},
		{"v2_completion_empty", "```ruby\n```", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.model.Reply = func(any) (string, error) { return tc.reply, nil }
			hdr := h.headers(gitlabtest.TokenOptions{})
			hdr.Set("X-Gitlab-Enabled-Feature-Flags", tc.flags)
			r := h.do(http.MethodPost, "/v2/code/completions", healthProbeBody, hdr)
			if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %q %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			checkGolden(t, tc.name, r.body)
			if got := decodeV2(t, r.body); got.Created < time.Now().Add(-time.Hour).Unix() {
				t.Errorf("created %d is not the current time", got.Created)
			}
		})
	}
}

func TestCompletionStream(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Deltas = func(any) []string {
		return []string{"```ru", "by\n  puts", " 'hi'\n", "end\n``", "`\nThat's it."}
	}
	r := h.post("/v2/code/completions", railsCompletionBody("def hello\n", "", map[string]any{"stream": true}))
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("%d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if string(r.body) != "  puts 'hi'\nend\n" {
		t.Errorf("raw stream %q", r.body)
	}
	if r.header.Get("X-Streaming-Format") != "" {
		t.Error("a raw stream claims to be SSE")
	}
}

func TestCompletionValidation(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	long := strings.Repeat("é", maxEditorContent+1) // characters, not bytes, count
	tests := []struct {
		name, body, detail string
	}{
		{"not JSON", `{"current_file":`, "Validation error: the body is not valid JSON"},
		{"not an object", `["current_file"]`, "Validation error: the body must be an object, not array"},
		{"no current_file", `{"prompt_version":2}`, "current_file is required"},
		{"wrong type", `{"current_file":{"file_name":"a.go","content_above_cursor":5}}`, "current_file.content_above_cursor must be a string, not number"},
		{"stream not a bool", `{"current_file":{"file_name":"a.go"},"stream":"yes"}`, "stream must be a boolean, not string"},
		{"content above too long", railsCompletionBody(long, "", nil), "current_file.content_above_cursor is longer than 100000 characters"},
		{"content below too long", railsCompletionBody("", long, nil), "current_file.content_below_cursor is longer than 100000 characters"},
		{"file name too long", `{"current_file":{"file_name":"` + strings.Repeat("a", 256) + `"}}`, "current_file.file_name is longer than 255"},
		{"unknown prompt_version", `{"current_file":{"file_name":"a.go"},"prompt_version":4}`, "prompt_version must be 1, 2 or 3"},
		{"prompt_version 3 with a string", `{"current_file":{"file_name":"a.go"},"prompt_version":3,"prompt":"x"}`, "list of messages"},
		{"too many context items", railsCompletionBody("", "", map[string]any{"context": make([]contextItem, 101)}), "at most 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post("/v2/code/completions", tc.body)
			if r.status != 422 || !strings.HasPrefix(string(r.body), `{"detail":"Validation error`) || !strings.Contains(string(r.body), tc.detail) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	if n := h.model.calls(); n != 0 {
		t.Errorf("invalid requests reached the model %d times", n)
	}
	// Exactly at the limits is fine.
	ok := railsCompletionBody(strings.Repeat("é", maxEditorContent), "", nil)
	if r := h.post("/v2/code/completions", ok); r.status != 200 {
		t.Errorf("content at the limit: %d %s", r.status, r.body)
	}
}

func TestCompletionModelErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		name   string
		err    error
		status int
		detail string
		retry  string
	}{
		{"rate limited", &model.Error{Status: 429, Type: "rate_limit", Message: "slow down", RetryAfter: 7 * time.Second}, 429, detailTooMany, "7"},
		{"backend error", &model.Error{Status: 500, Type: "server_error", Message: "boom"}, 503, detailInferenceFailed, ""},
		{"broken stream", &model.Error{Status: 502, Type: "bad_gateway", Message: "reset"}, 503, detailInferenceFailed, ""},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{true: " (stream)"}[stream], func(t *testing.T) {
				h.model.Reply = func(any) (string, error) { return "", tc.err }
				r := h.post("/v2/code/completions", railsCompletionBody("x = ", "", map[string]any{"stream": stream}))
				want, _ := json.Marshal(map[string]string{"detail": tc.detail})
				if r.status != tc.status || string(r.body) != string(want) || r.header.Get("Retry-After") != tc.retry {
					t.Fatalf("%d %s Retry-After=%q", r.status, r.body, r.header.Get("Retry-After"))
				}
			})
		}
	}
}

func TestCompletionTimeout(t *testing.T) {
	var sm *scriptedModel
	h := newHarness(t, harnessOptions{options: func(o *Options) {
		sm = &scriptedModel{fakeModel: o.Model.(*fakeModel), block: true}
		o.Model = sm
		o.Timeouts.Completions = time.Millisecond
	}})
	for _, stream := range []bool{false, true} {
		r := h.post("/v2/code/completions", railsCompletionBody("x = ", "", map[string]any{"stream": stream}))
		if r.status != 504 || !strings.Contains(string(r.body), "did not answer in time") {
			t.Fatalf("stream=%v: %d %s", stream, r.status, r.body)
		}
	}
}

func TestCompletionForeignEndpointIgnored(t *testing.T) {
	var hits atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	t.Cleanup(foreign.Close)
	h := newHarness(t, harnessOptions{})
	body := railsCompletionBody("x = ", "", map[string]any{"model_endpoint": foreign.URL + "/v1", "model_api_key": "leak-me"})
	if r := h.post("/v2/code/completions", body); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if h.model.calls() != 1 || hits.Load() != 0 {
		t.Fatalf("model calls %d, foreign endpoint hits %d", h.model.calls(), hits.Load())
	}
	if u := userText(h.model.lastChat(t)); strings.Contains(u, "leak-me") || strings.Contains(u, foreign.URL) {
		t.Error("endpoint or key reached the prompt")
	}
}

func TestCompletionAllowedModels(t *testing.T) {
	h := newHarness(t, harnessOptions{models: &Models{Default: "qwen-coder", Allowed: []string{"qwen-coder", "gemma"}}})
	r := h.post("/v2/code/completions", railsCompletionBody("x = ", "", map[string]any{"model_identifier": "custom_openai/gemma"}))
	if r.status != 200 || h.model.lastChat(t).Model != "gemma" || decodeV2(t, r.body).Model.Name != "gemma" {
		t.Fatalf("allowed identifier: %d %s", r.status, r.body)
	}
	r = h.post("/v2/code/completions", railsCompletionBody("x = ", "", map[string]any{"model_identifier": "custom_openai/Qwen2.5-Coder"}))
	want := `{"detail":"model \"Qwen2.5-Coder\" is not allowed by the appliance; allowed: qwen-coder, gemma"}`
	if r.status != 422 || string(r.body) != want {
		t.Fatalf("refused identifier: %d %s", r.status, r.body)
	}
	if h.model.calls() != 1 {
		t.Errorf("model calls %d", h.model.calls())
	}
}

func TestCompletionDirectAccessToken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	hdr := h.headers(gitlabtest.TokenOptions{})
	r := h.do(http.MethodPost, "/v1/code/user_access_token", "", hdr)
	var tok userAccessToken
	if r.status != 200 || json.Unmarshal(r.body, &tok) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	direct := hdr.Clone()
	direct.Set("Authorization", "Bearer "+tok.Token)
	if r := h.do(http.MethodPost, "/v2/code/completions", healthProbeBody, direct); r.status != 200 {
		t.Fatalf("direct-access token on completions: %d %s", r.status, r.body)
	}
	// GitLab refuses its own tokens for completions through /v3.
	v3 := `{"prompt_components":[{"type":"code_editor_completion","payload":{"file_name":"a.rb","content_above_cursor":"x","content_below_cursor":""}}]}`
	if r := h.do(http.MethodPost, "/v3/code/completions", v3, direct); r.status != 403 {
		t.Fatalf("direct-access token on /v3: %d %s", r.status, r.body)
	}
}

// benchModel answers at once without recording anything.
type benchModel struct{}

func (benchModel) Chat(context.Context, model.ChatRequest) (model.Result, error) {
	return model.Result{Text: "(name)\n  puts name\nend", Usage: model.Usage{PromptTokens: 90, CompletionTokens: 9}}, nil
}

func (m benchModel) ChatStream(ctx context.Context, r model.ChatRequest, _ func(string) error) (model.Result, error) {
	return m.Chat(ctx, r)
}

func (m benchModel) Complete(ctx context.Context, _ model.CompletionRequest) (model.Result, error) {
	return m.Chat(ctx, model.ChatRequest{})
}

func (m benchModel) CompleteStream(ctx context.Context, _ model.CompletionRequest, _ func(string) error) (model.Result, error) {
	return m.Chat(ctx, model.ChatRequest{})
}

// BenchmarkCompletion measures one /v2/code/completions request in
// process: real token validation against a demo GitLab's keys, prompt
// building, cleaning and the JSON answer; the model answers at once.
func BenchmarkCompletion(b *testing.B) {
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	gl := httptest.NewTLSServer(iss.Handler())
	defer gl.Close()
	iss.SetURL(gl.URL)
	set, err := jwks.New(jwks.Options{IssuerURL: gl.URL, HTTPClient: gl.Client()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = set.Run(ctx) }()
	store, err := keys.Open(b.TempDir(), keys.Options{Bits: keys.MinBits})
	if err != nil {
		b.Fatal(err)
	}
	v, signer, err := NewAuth(AuthOptions{GitLabURL: gl.URL, GitLabKeys: set, Local: store})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Validator: v, Model: benchModel{}, Signer: signer, Logger: slog.New(slog.DiscardHandler),
		Models: &Models{Default: "code-model"}})
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !set.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("GitLab keys not loaded")
		}
	}
	tok, err := iss.Token(gitlabtest.TokenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v2/code/completions")
	for k, vs := range iss.Headers(tok, gitlabtest.TokenOptions{}) {
		req.Header.Set(k, vs[0])
	}
	req.SetBodyString(railsCompletionBody("class User\n  def greet", "\n  end\nend\n", nil))
	var rc fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		rc.Init(&req, nil, nil)
		s.Handle(&rc)
		if rc.Response.StatusCode() != 200 {
			b.Fatalf("%d %s", rc.Response.StatusCode(), rc.Response.Body())
		}
	}
}
