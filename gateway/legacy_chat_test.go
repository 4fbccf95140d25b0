package gateway

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// fixedNow is the clock of tests that assert timestamps.
var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFixedClockHarness(t *testing.T, ms *Models) *harness {
	t.Helper()
	return newHarness(t, harnessOptions{models: ms, options: func(o *Options) { o.Now = func() time.Time { return fixedNow } }})
}

// docsCurlBody is the manual test of GitLab's troubleshooting guide
// ("Check if the AI gateway can make a request to the model").
const docsCurlBody = `{ "prompt_components": [ { "type": "string", "metadata": { "source": "string", "version": "string" }, "payload": { "content": "Hello", "provider": "litellm", "model": "mistral", "model_endpoint": "http://vllm.internal:8000/v1" } } ], "stream": false }`

func TestLegacyChatManualTest(t *testing.T) {
	h := newFixedClockHarness(t, nil)
	h.model.Reply = func(any) (string, error) { return "Hello! How can I help?", nil }
	r := h.post("/v1/chat/agent", docsCurlBody)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	testutil.Golden(t, "testdata/prompts/legacy_chat.json", r.body)
	got := h.model.lastChat(t)
	st, _ := prompts.SettingsFor(prompts.DuoChat)
	want := model.ChatRequest{Model: "chat-model", Messages: []model.Message{{Role: "user", Content: "Hello"}},
		MaxTokens: st.MaxTokens, Temperature: &st.Temperature, Stop: st.Stop}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("model request\n got %+v\nwant %+v", got, want)
	}
}

func TestLegacyChatRequests(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name, path, payload string
		want                model.ChatRequest
	}{
		{"string content", "/v1/chat/explain_code", `"content":"Explain x := 1"`,
			model.ChatRequest{Model: "chat-model", Messages: []model.Message{{Role: "user", Content: "Explain x := 1"}}, MaxTokens: 2048, Temperature: f(0.1)}},
		{"message list", "/v1/chat/agent", `"content":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"Bye"}]`,
			model.ChatRequest{Model: "chat-model", Messages: []model.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"},
				{Role: "assistant", Content: "Hello"}, {Role: "user", Content: "Bye"}}, MaxTokens: 2048, Temperature: f(0.1), Stop: []string{"\nObservation:"}}},
		{"params laid over, max tokens clamped, at most 4 stops", "/v1/chat/write_tests",
			`"content":"t","params":{"temperature":0.7,"max_tokens_to_sample":8192,"stop_sequences":["a","","b","c","d","e"]}`,
			model.ChatRequest{Model: "chat-model", Messages: []model.Message{{Role: "user", Content: "t"}}, MaxTokens: 4096, Temperature: f(0.7), Stop: []string{"a", "b", "c", "d"}}},
		{"empty stop list clears the feature's stops", "/v1/chat/agent", `"content":"t","params":{"stop_sequences":[],"max_tokens_to_sample":10}`,
			model.ChatRequest{Model: "chat-model", Messages: []model.Message{{Role: "user", Content: "t"}}, MaxTokens: 10, Temperature: f(0.1)}},
		{"unknown fields ignored", "/v1/chat/refactor_code", `"content":"r","model_api_key":"secret","extra":{"x":1}`,
			model.ChatRequest{Model: "chat-model", Messages: []model.Message{{Role: "user", Content: "r"}}, MaxTokens: 3072, Temperature: f(0.1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"prompt_components":[{"type":"prompt","metadata":{"source":"GitLab EE","version":"18.4.0"},"payload":{` + tc.payload + `}}]}`
			r := h.post(tc.path, body)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := h.model.lastChat(t); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("model request\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestLegacyChatIdentifier(t *testing.T) {
	h := newHarness(t, harnessOptions{models: &Models{Default: "chat-model", Allowed: []string{"chat-model", "qwen-coder"}}})
	body := `{"prompt_components":[{"payload":{"content":"hi","provider":"litellm","model":"general","model_identifier":"custom_openai/qwen-coder"}}]}`
	if r := h.post("/v1/chat/agent", body); r.status != 200 || h.model.lastChat(t).Model != "qwen-coder" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var got legacyChatResponse
	if err := json.Unmarshal(h.post("/v1/chat/agent", body).body, &got); err != nil || got.Metadata.Model != "fake" || got.Metadata.Provider != "duo-confidential" {
		t.Errorf("metadata %+v, %v", got.Metadata, err)
	}
}

func TestLegacyChatErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	one := func(payload string) string {
		return `{"prompt_components":[{"type":"prompt","payload":{` + payload + `}}]}`
	}
	tests := []struct {
		name, path, body string
		status           int
		detail           string // prefix
	}{
		{"unknown invokable", "/v1/chat/nope", one(`"content":"x"`), 404, "Not found"},
		{"nested invokable", "/v1/chat/agent/x", one(`"content":"x"`), 404, "Not found"},
		{"bad JSON", "/v1/chat/agent", `{"prompt_components":[`, 422, "Validation error: the body is not valid JSON"},
		{"no components", "/v1/chat/agent", `{"prompt_components":[]}`, 422, "Validation error: prompt_components must hold exactly one component, not 0"},
		{"components missing", "/v1/chat/agent", `{"stream":false}`, 422, "Validation error: prompt_components must hold exactly one component, not 0"},
		{"two components", "/v1/chat/agent", `{"prompt_components":[{"payload":{"content":"a"}},{"payload":{"content":"b"}}]}`, 422,
			"Validation error: prompt_components must hold exactly one component, not 2"},
		{"no payload", "/v1/chat/agent", `{"prompt_components":[{"type":"prompt"}]}`, 422, "Validation error: prompt_components[0].payload is required"},
		{"no content", "/v1/chat/agent", one(`"provider":"litellm"`), 422, "Validation error: prompt_components[0].payload.content is required"},
		{"empty content", "/v1/chat/agent", one(`"content":""`), 422, "Validation error: prompt_components[0].payload.content is empty"},
		{"content a number", "/v1/chat/agent", one(`"content":5`), 422, "Validation error: prompt_components[0].payload.content must be a string or a list"},
		{"empty list", "/v1/chat/agent", one(`"content":[]`), 422, "Validation error: prompt_components[0].payload.content must hold 1 to 100 messages, not 0"},
		{"bad role", "/v1/chat/agent", one(`"content":[{"role":"tool","content":"x"}]`), 422, "Validation error: prompt_components[0].payload.content[0].role must be"},
		{"message not an object", "/v1/chat/agent", one(`"content":["hi"]`), 422, "Validation error: prompt_components[0].payload.content must be a string or a list"},
		{"temperature too high", "/v1/chat/agent", one(`"content":"x","params":{"temperature":1.5}`), 422, "Validation error: params.temperature must be between 0 and 1"},
		{"max tokens zero", "/v1/chat/agent", one(`"content":"x","params":{"max_tokens_to_sample":0}`), 422, "Validation error: params.max_tokens_to_sample must be between 1 and 8192"},
		{"max tokens too many", "/v1/chat/agent", one(`"content":"x","params":{"max_tokens_to_sample":9000}`), 422, "Validation error: params.max_tokens_to_sample"},
		{"too many stops", "/v1/chat/agent", one(`"content":"x","params":{"stop_sequences":["1","2","3","4","5","6","7","8","9","10","11"]}`), 422,
			"Validation error: params.stop_sequences must hold at most 10"},
		{"long stop", "/v1/chat/agent", one(`"content":"x","params":{"stop_sequences":["` + strings.Repeat("s", 226) + `"]}`), 422,
			"Validation error: params.stop_sequences[0] is longer than 225"},
		{"stream not a bool", "/v1/chat/agent", `{"prompt_components":[{"payload":{"content":"x"}}],"stream":1}`, 422, "Validation error: stream"},
		{"content too long", "/v1/chat/agent", one(`"content":"` + strings.Repeat("é", legacyMaxContentChars+1) + `"`), 422,
			"Validation error: prompt_components[0].payload.content is longer than 400000 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post(tc.path, tc.body)
			var got struct{ Detail string }
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != tc.status || !strings.HasPrefix(got.Detail, tc.detail) {
				t.Fatalf("%d %s, want %d %q…", r.status, r.body, tc.status, tc.detail)
			}
		})
	}
	if n := h.model.calls(); n != 0 {
		t.Errorf("invalid requests reached the model %d times", n)
	}
}

func TestLegacyChatScopes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	body := `{"prompt_components":[{"payload":{"content":"x"}}]}`
	for inv, want := range map[string]string{
		"agent": "duo_chat", "explain_code": "duo_chat", "write_tests": "duo_chat", "refactor_code": "duo_chat",
		"explain_vulnerability": "explain_vulnerability", "summarize_comments": "summarize_comments", "troubleshoot_job": "troubleshoot_job",
	} {
		t.Run(inv, func(t *testing.T) {
			r := h.do(http.MethodPost, "/v1/chat/"+inv, body, h.tokenFor("complete_code", "include_file_context"))
			if r.status != 403 || string(r.body) != `{"detail":"Unauthorized to access `+want+`"}` {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if r := h.do(http.MethodPost, "/v1/chat/"+inv, body, h.tokenFor(want)); r.status != 200 {
				t.Fatalf("with %s: %d %s", want, r.status, r.body)
			}
		})
	}
}

func TestLegacyChatModelErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, stream := range []bool{false, true} {
		for _, tc := range []struct {
			err    *model.Error
			status int
			body   string
		}{
			{&model.Error{Status: 500, Type: "server_error", Message: "boom"}, 503, `{"detail":"Inference failed"}`},
			{&model.Error{Status: 429, Type: "rate_limit", Message: "slow"}, 429, `{"detail":"Too many requests. Please try again later."}`},
			{&model.Error{Status: 404, Type: "not_found", Message: "no such model"}, 422, `{"detail":"the model rejected the request: no such model"}`},
		} {
			h.model.Reply = func(any) (string, error) { return "", tc.err }
			body := `{"prompt_components":[{"payload":{"content":"x"}}],"stream":` + map[bool]string{false: "false", true: "true"}[stream] + `}`
			if r := h.post("/v1/chat/agent", body); r.status != tc.status || string(r.body) != tc.body {
				t.Errorf("stream=%v %d: %d %s", stream, tc.err.Status, r.status, r.body)
			}
		}
	}
}

func TestLegacyChatStream(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Deltas = func(any) []string { return []string{"Hel", "lo", "!"} }
	r := h.do(http.MethodPost, "/v1/chat/troubleshoot_job", `{"prompt_components":[{"payload":{"content":"why did it fail?"}}],"stream":true}`,
		h.tokenFor("troubleshoot_job"))
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	testutil.Golden(t, "testdata/prompts/legacy_chat_stream.txt", r.body)
	if got := h.model.lastChat(t); got.MaxTokens != 2048 || got.Messages[0].Content != "why did it fail?" {
		t.Errorf("model request %+v", got)
	}
}

func FuzzParseLegacyContent(f *testing.F) {
	for _, s := range []string{`"Hello"`, `[{"role":"user","content":"hi"}]`, `[]`, `null`, `5`, `[{"role":"x"}]`, `"\u00e9"`, ` [ ] `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		msgs, err := parseLegacyContent(raw)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Status != 422 {
				t.Fatalf("error %v is not a 422", err)
			}
			return
		}
		if len(msgs) == 0 || len(msgs) > legacyMaxMessages {
			t.Fatalf("%d messages", len(msgs))
		}
		for _, m := range msgs {
			if m.Role != "system" && m.Role != "user" && m.Role != "assistant" {
				t.Fatalf("role %q", m.Role)
			}
		}
	})
}
