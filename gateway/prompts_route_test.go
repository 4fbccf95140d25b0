package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// promptInputs are, per served prompt, inputs as GitLab names them with a
// marker the rendered prompt must carry to the model.
var promptInputs = map[prompts.Feature]map[string]any{
	prompts.ChatExplainCode:          {"file_name": "a.go", "selected_text": "MARKER"},
	prompts.ChatWriteTests:           {"file_name": "a.go", "selected_text": "MARKER"},
	prompts.ChatRefactorCode:         {"file_name": "a.go", "selected_text": "MARKER"},
	prompts.ChatFixCode:              {"file_name": "a.go", "selected_text": "MARKER"},
	prompts.ChatTroubleshootJob:      {"job_name": "test", "job_log": "MARKER"},
	prompts.ChatSummarizeComments:    {"notes_content": "MARKER"},
	prompts.ChatExplainVulnerability: {"title": "MARKER"},
	prompts.GenerateCommitMessage:    {"diff": "MARKER"},
	prompts.SummarizeNewMergeRequest: {"extracted_diff": "MARKER"},
	prompts.SummarizeReview:          {"draft_notes_content": "MARKER"},
	prompts.ReviewMergeRequest:       {"diff_lines": "MARKER"},
	prompts.ResolveVulnerability:     {"code": "MARKER"},
	prompts.GenerateDescription:      {"content": "MARKER"},
	prompts.CategorizeQuestion:       {"question": "MARKER"},
	prompts.GlabAskGitCommand:        {"prompt": "MARKER"},
	prompts.ModelConfigurationCheck:  {},
}

func promptBody(t *testing.T, v map[string]any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tokenFor returns Rails' headers with only the given unit primitives.
func (h *harness) tokenFor(scopes ...string) http.Header {
	h.t.Helper()
	return h.headers(gitlabtest.TokenOptions{Scopes: scopes})
}

// postPrompt posts with a token entitled to every served prompt (GitLab
// puts all entitled primitives in scopes).
func (h *harness) postPrompt(path, body string) response {
	h.t.Helper()
	scopes := slices.Clone(gitlabtest.DefaultScopes)
	for _, sc := range promptScopes {
		scopes = append(scopes, sc...)
	}
	return h.do(http.MethodPost, path, body, h.tokenFor(scopes...))
}

func TestPromptEveryServedFeature(t *testing.T) {
	ms := &Models{Default: "chat-model", ByFeature: map[prompts.Feature]string{prompts.GenerateCommitMessage: "commit-model"}}
	h := newHarness(t, harnessOptions{models: ms})
	h.model.Reply = func(req any) (string, error) { return "answer to " + req.(model.ChatRequest).Model, nil }

	// Every prompt the gateway serves is tested, and is a known feature.
	for f := range promptScopes {
		if _, ok := promptInputs[f]; !ok {
			t.Errorf("%s is served but not tested", f)
		}
		if !slices.Contains(prompts.Features(), f) {
			t.Errorf("%s is served but unknown to prompts", f)
		}
	}
	for f, inputs := range promptInputs {
		t.Run(string(f), func(t *testing.T) {
			body := promptBody(t, map[string]any{"inputs": inputs, "prompt_version": "^1.0.0", "stream": false,
				"model_metadata": map[string]any{"provider": "openai", "name": "general", "endpoint": "http://model.local/v1", "api_key": "k"}})
			r := h.do(http.MethodPost, "/v1/prompts/"+string(f), body, h.tokenFor(promptScopes[f][0]))
			wantModel := ms.For(f)
			if r.status != 200 || string(r.body) != `"answer to `+wantModel+`"` || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %q", r.status, r.body, r.header.Get("Content-Type"))
			}
			got := h.model.lastChat(t)
			st, _ := prompts.SettingsFor(f)
			if got.Model != wantModel || got.MaxTokens != st.MaxTokens || got.Temperature == nil || *got.Temperature != st.Temperature ||
				!reflect.DeepEqual(got.Stop, st.Stop) {
				t.Errorf("model request %+v, settings %+v", got, st)
			}
			if len(got.Messages) < 2 || got.Messages[0].Role != "system" || got.Messages[len(got.Messages)-1].Role != "user" {
				t.Fatalf("messages %+v", got.Messages)
			}
			want := "MARKER"
			if f == prompts.ModelConfigurationCheck {
				want = "hello"
			}
			if !strings.Contains(got.Messages[len(got.Messages)-1].Content, want) {
				t.Errorf("the user message lacks %q: %q", want, got.Messages[len(got.Messages)-1].Content)
			}
		})
	}
}

func TestPromptScopeRefusal(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for f, inputs := range promptInputs {
		t.Run(string(f), func(t *testing.T) {
			body := promptBody(t, map[string]any{"inputs": inputs})
			r := h.do(http.MethodPost, "/v1/prompts/"+string(f), body, h.tokenFor("include_file_context"))
			if want := `{"detail":"Unauthorized to access '` + string(f) + `'"}`; r.status != 403 || string(r.body) != want {
				t.Fatalf("%d %s, want 403 %s", r.status, r.body, want)
			}
			// Each of the prompt's primitives alone is enough.
			for _, sc := range promptScopes[f] {
				if r := h.do(http.MethodPost, "/v2/prompts/"+string(f), body, h.tokenFor(sc)); r.status != 200 {
					t.Errorf("scope %s: %d %s", sc, r.status, r.body)
				}
			}
		})
	}
	if n := h.model.calls(); n != countScopes() {
		t.Errorf("the model was called %d times, want %d (refusals must not reach it)", n, countScopes())
	}
}

func countScopes() int {
	n := 0
	for _, s := range promptScopes {
		n += len(s)
	}
	return n
}

func TestPromptIDForms(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) { return "Hello", nil }
	// Rails' Test connection body (model_configuration_probe.rb).
	check := `{"inputs":{},"stream":false,"model_metadata":{"name":"general","endpoint":"http://vllm:8000/v1","api_key":"secret","provider":"openai","identifier":""}}`
	for _, path := range []string{
		"/v1/prompts/model_configuration%2Fcheck",
		"/v1/prompts/model_configuration%2fcheck",
		"/v1/prompts/model_configuration/check",
		"/v1/prompts/model_configuration/check/",
	} {
		t.Run(path, func(t *testing.T) {
			r := h.do(http.MethodPost, path, check, h.tokenFor("complete_code"))
			if r.status != 200 || string(r.body) != `"Hello"` {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	for _, path := range []string{"/v1/prompts/chat/explain_code", "/v1/prompts/chat%2Fexplain_code"} {
		body := promptBody(t, map[string]any{"inputs": promptInputs[prompts.ChatExplainCode]})
		if r := h.do(http.MethodPost, path, body, nil); r.status != 200 || string(r.body) != `"Hello"` {
			t.Errorf("%s: %d %s", path, r.status, r.body)
		}
	}
	// The whole model request of the check: tiny, so it answers in time.
	h.post("/v1/prompts/model_configuration%2Fcheck", check)
	b, err := json.MarshalIndent(h.model.lastChat(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/prompts/check_model_request.json", append(b, '\n'))
}

func TestPromptRequestErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	commit := "/v1/prompts/generate_commit_message"
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, path, body string
		status           int
		detail           string
		prefix           bool // detail is a prefix
	}{
		{"unknown prompt", "/v1/prompts/nope/x", `{"inputs":{}}`, 404, "Prompt 'nope/x' not found", false},
		{"own-route feature", "/v1/prompts/chat/react", `{"inputs":{}}`, 404, "Prompt 'chat/react' not found", false},
		{"completions prompt", "/v1/prompts/code_suggestions/completions", `{"inputs":{}}`, 404, "Prompt 'code_suggestions/completions' not found", false},
		{"long unknown id is cut", "/v1/prompts/" + long, `{"inputs":{}}`, 404, "Prompt '" + long[:maxPromptIDInDetail] + "…' not found", false},
		{"bad JSON", commit, `{"inputs":`, 422, "Validation error: the body is not valid JSON", true},
		{"inputs is a string", commit, `{"inputs":"diff"}`, 422, "Validation error: inputs", true},
		{"inputs is a list", commit, `{"inputs":["diff"]}`, 422, "Validation error: inputs must be", true},
		{"inputs missing", commit, `{"stream":false}`, 422, "Validation error: inputs is required: an object of the prompt's template variables", false},
		{"inputs null", commit, `{"inputs":null}`, 422, "Validation error: inputs is required", true},
		{"inputs empty", commit, `{"inputs":{"diff":"  ","current_date":"today"}}`, 422,
			"Validation error: inputs of 'generate_commit_message' hold no template variable with content", false},
		{"stream not a bool", commit, `{"inputs":{"diff":"x"},"stream":"yes"}`, 422, "Validation error: stream must be", true},
		{"version not a string", commit, `{"inputs":{"diff":"x"},"prompt_version":1}`, 422, "Validation error: prompt_version must be", true},
		{"bad version", commit, `{"inputs":{"diff":"x"},"prompt_version":"latest"}`, 422, "Invalid version constraint", false},
		{"model_metadata not an object", commit, `{"inputs":{"diff":"x"},"model_metadata":"general"}`, 422, "Validation error: model_metadata must be", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.postPrompt(tc.path, tc.body)
			var got struct{ Detail string }
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.prefix {
				if !strings.HasPrefix(got.Detail, tc.detail) {
					t.Errorf("detail %q, want prefix %q", got.Detail, tc.detail)
				}
			} else if got.Detail != tc.detail {
				t.Errorf("detail %q, want %q", got.Detail, tc.detail)
			}
		})
	}
	if n := h.model.calls(); n != 0 {
		t.Errorf("invalid requests reached the model %d times", n)
	}
	// Valid constraints GitLab sends are accepted; nested input values are
	// passed as JSON text.
	for _, v := range []string{`"^1.0.0"`, `"1.0.1-dev"`, `">=1.0.0, <2.0.0"`, `null`, `""`} {
		if r := h.postPrompt(commit, `{"inputs":{"diff":{"files":["a.go"]}},"prompt_version":`+v+`}`); r.status != 200 {
			t.Errorf("version %s: %d %s", v, r.status, r.body)
		}
	}
	if got := h.model.lastChat(t).Messages[1].Content; !strings.Contains(got, `{"files":["a.go"]}`) {
		t.Errorf("object input not rendered as JSON: %q", got)
	}
}

func TestPromptModelErrorsAre421(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		name    string
		err     error
		detail  string
		retryIn string
	}{
		{"unknown model", &model.Error{Status: 404, Type: "not_found", Message: "The model `x` does not exist."}, "404: The model `x` does not exist.", ""},
		{"rate limited", &model.Error{Status: 429, Type: "rate_limit", Message: "slow down", RetryAfter: 3 * time.Second}, "429: slow down", "3"},
		{"backend not attested", &model.Error{Status: 503, Type: "service_unavailable", Message: "attesting"}, "503: attesting", ""},
		{"broken stream", &model.Error{Status: 502, Type: "bad_gateway", Message: "upstream closed"}, "502: upstream closed", ""},
	}
	for _, tc := range tests {
		for _, path := range []string{"/v1/prompts/model_configuration%2Fcheck", "/v1/prompts/chat/explain_code", "/v2/prompts/generate_commit_message"} {
			for _, stream := range []bool{false, true} {
				t.Run(tc.name+path+map[bool]string{true: " stream"}[stream], func(t *testing.T) {
					h.model.Reply = func(any) (string, error) { return "", tc.err }
					f, _ := prompts.LookupFeature(path[len("/v1/prompts/"):])
					body := promptBody(t, map[string]any{"inputs": promptInputs[f], "stream": stream})
					r := h.postPrompt(path, body)
					want, _ := json.Marshal(map[string]string{"detail": tc.detail})
					if r.status != 421 || string(r.body) != string(want) || r.header.Get("Retry-After") != tc.retryIn {
						t.Fatalf("%d %s Retry-After=%q, want 421 %s", r.status, r.body, r.header.Get("Retry-After"), want)
					}
				})
			}
		}
	}
}

// blockingModel never answers: every call waits for its context.
type blockingModel struct {
	mu    sync.Mutex
	calls int
}

func (b *blockingModel) wait(ctx context.Context) (model.Result, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	<-ctx.Done()
	return model.Result{}, ctx.Err()
}

func (b *blockingModel) Chat(ctx context.Context, _ model.ChatRequest) (model.Result, error) {
	return b.wait(ctx)
}

func (b *blockingModel) ChatStream(ctx context.Context, _ model.ChatRequest, _ func(string) error) (model.Result, error) {
	return b.wait(ctx)
}

func (b *blockingModel) Complete(ctx context.Context, _ model.CompletionRequest) (model.Result, error) {
	return b.wait(ctx)
}

func (b *blockingModel) CompleteStream(ctx context.Context, _ model.CompletionRequest, _ func(string) error) (model.Result, error) {
	return b.wait(ctx)
}

func TestPromptTimeouts(t *testing.T) {
	// The check is bounded by Timeouts.Check and the other prompts by
	// Timeouts.Prompts: with the other bound at an hour, a wrong choice
	// hangs until the test client gives up.
	short, long := 20*time.Millisecond, time.Hour
	for _, tc := range []struct {
		name  string
		to    Timeouts
		paths map[string]string // path → body
	}{
		{"check", Timeouts{Check: short, Prompts: long}, map[string]string{
			"/v1/prompts/model_configuration%2Fcheck": `{"inputs":{}}`,
			"/v1/prompts/model_configuration/check":   `{"inputs":{},"stream":true}`,
		}},
		{"features", Timeouts{Check: long, Prompts: short}, map[string]string{
			"/v1/prompts/generate_commit_message": `{"inputs":{"diff":"x"}}`,
			"/v2/prompts/generate_commit_message": `{"inputs":{"diff":"x"},"stream":true}`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bm := &blockingModel{}
			h := newHarness(t, harnessOptions{options: func(o *Options) { o.Model = bm; o.Timeouts = tc.to }})
			for path, body := range tc.paths {
				r := h.postPrompt(path, body)
				if r.status != 421 || string(r.body) != `{"detail":"504: the model did not answer in time"}` {
					t.Fatalf("%s %s: %d %s", path, body, r.status, r.body)
				}
			}
			bm.mu.Lock()
			defer bm.mu.Unlock()
			if bm.calls != len(tc.paths) {
				t.Errorf("%d model calls", bm.calls)
			}
		})
	}
}

func TestPromptCheckRefusalIsReadable(t *testing.T) {
	// GitLab's Test connection shows 421 details; the appliance's own
	// refusal of the model under test must read there.
	ms := &Models{Default: "qwen", Allowed: []string{"qwen"}}
	h := newHarness(t, harnessOptions{models: ms})
	body := `{"inputs":{},"model_metadata":{"name":"general","identifier":"custom_openai/llama"}}`
	r := h.postPrompt("/v1/prompts/model_configuration%2Fcheck", body)
	if r.status != 421 || !strings.HasPrefix(string(r.body), `{"detail":"422: model \"llama\" is not allowed by the appliance; allowed: qwen"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Other prompts answer the refusal as it is.
	r = h.postPrompt("/v1/prompts/generate_commit_message", `{"inputs":{"diff":"x"},"model_metadata":{"identifier":"llama"}}`)
	if r.status != 422 || !strings.Contains(string(r.body), `is not allowed by the appliance`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// An allowed identifier is honoured.
	if r := h.postPrompt("/v1/prompts/model_configuration%2Fcheck", `{"inputs":{},"model_metadata":{"identifier":"custom_openai/qwen"}}`); r.status != 200 ||
		h.model.lastChat(t).Model != "qwen" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if h.model.calls() != 1 {
		t.Errorf("%d model calls", h.model.calls())
	}
}

func TestPromptStreams(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Deltas = func(any) []string { return []string{"Hel", "", "lo", " world"} }
	body := promptBody(t, map[string]any{"inputs": promptInputs[prompts.ChatExplainCode], "stream": true})

	r := h.postPrompt("/v1/prompts/chat/explain_code", body)
	if r.status != 200 || string(r.body) != "Hello world" || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("v1 stream: %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
	}
	if got := h.model.lastChat(t); got.MaxTokens != 2048 || !strings.Contains(got.Messages[1].Content, "MARKER") {
		t.Errorf("model request %+v", got)
	}

	r = h.postPrompt("/v2/prompts/chat/explain_code", body)
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("v2 stream: %d %q", r.status, r.body)
	}
	testutil.Golden(t, "testdata/prompts/v2_stream.ndjson", r.body)
	for _, l := range lines(r.body) {
		var v promptV2Response
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("v2 line %q: %v", l, err)
		}
	}

	// A model that ends without text: an empty stream (v2: just usage).
	h.model.Deltas = func(any) []string { return nil }
	if r := h.postPrompt("/v1/prompts/chat/explain_code", body); r.status != 200 || len(r.body) != 0 {
		t.Errorf("empty stream: %d %q", r.status, r.body)
	}
}

func TestPromptV2Response(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) { return "Fix the parser", nil }
	r := h.postPrompt("/v2/prompts/generate_commit_message", `{"inputs":{"diff":"+x"},"prompt_version":"^1.0.0"}`)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	testutil.Golden(t, "testdata/prompts/v2.json", r.body)
}

// partialModel streams one delta, then fails.
type partialModel struct{ fakeModel }

func (p *partialModel) ChatStream(_ context.Context, _ model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	if err := onDelta("partial"); err != nil {
		return model.Result{}, err
	}
	return model.Result{}, &model.Error{Status: 502, Type: "bad_gateway", Message: "stream cut"}
}

func TestPromptStreamFailingMidway(t *testing.T) {
	pm := &partialModel{}
	h := newHarness(t, harnessOptions{options: func(o *Options) { o.Model = pm }})
	body := promptBody(t, map[string]any{"inputs": promptInputs[prompts.ChatFixCode], "stream": true})
	// Once text has gone out the status is 200; the stream just ends.
	if r := h.postPrompt("/v1/prompts/chat/fix_code", body); r.status != 200 || string(r.body) != "partial" {
		t.Fatalf("%d %q", r.status, r.body)
	}
	// v2 sends no usage line for a failed call.
	if r := h.postPrompt("/v2/prompts/chat/fix_code", body); r.status != 200 || string(r.body) != `{"content":"partial"}`+"\n" {
		t.Fatalf("%d %q", r.status, r.body)
	}
}

func TestValidVersionConstraint(t *testing.T) {
	for _, s := range []string{"", " ", "^1.0.0", "1.0.0", "~2.1", "~=1.4", ">=1.0.0,<2.0.0", ">= 1.0.0, < 2.0.0", "1.0.1-dev", "0.0.1-dev",
		"*", "1.*", "1.x", "1.0.* || 2.0.*", "==1.0.0", "!=1.2.3", "v1.0.0", "1.0.0+build.5", "2.0.0-rc.1"} {
		if !validVersionConstraint(s) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"latest", "^", ">=", "1.0.0,", "|| 1.0", "1..0", "^^1", "1.0.0 ||", ">>1", strings.Repeat("1", 101), "one"} {
		if validVersionConstraint(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzValidVersionConstraint(f *testing.F) {
	for _, s := range []string{"^1.0.0", ">= 1.0, <2", "1.0.* || 2.0.*", "latest", "", "1.0.1-dev"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok := validVersionConstraint(s)
		if ok != validVersionConstraint(" "+s+"\t") {
			t.Errorf("surrounding space changes the verdict on %q", s)
		}
		if ok && len(strings.TrimSpace(s)) > 100 {
			t.Errorf("overlong %q accepted", s)
		}
	})
}

func TestTruncateDetail(t *testing.T) {
	if got := truncateDetail("ééé", 3); got != "é…" {
		t.Errorf("cut inside a rune: %q", got)
	}
	if got := truncateDetail("abc", 3); got != "abc" {
		t.Errorf("%q", got)
	}
}

// TestPromptStripsReasoning: a reasoning model's <think> block never
// reaches a commit message or the legacy chat answer.
func TestPromptStripsReasoning(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) {
		return "<think>the diff renames a field</think>\n\nrefactor: rename Foo to Bar", nil
	}
	hdr := h.headers(gitlabtest.TokenOptions{Scopes: []string{"generate_commit_message", "duo_chat"}})
	r := h.do(http.MethodPost, "/v1/prompts/generate_commit_message", `{"inputs":{"diff":"-Foo\n+Bar"}}`, hdr)
	if r.status != 200 || string(r.body) != `"refactor: rename Foo to Bar"` {
		t.Errorf("prompt: %d %s", r.status, r.body)
	}
	r = h.do(http.MethodPost, "/v1/chat/agent", `{"prompt_components":[{"type":"prompt","payload":{"content":"hi","provider":"litellm","model":"general"}}]}`, hdr)
	if r.status != 200 || !strings.Contains(string(r.body), `"response":"refactor: rename Foo to Bar"`) {
		t.Errorf("legacy chat: %d %s", r.status, r.body)
	}
}
