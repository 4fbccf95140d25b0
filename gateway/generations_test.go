package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// railsGenerationBody is a generation as Rails sends it for a self-hosted
// model (ee/lib/code_suggestions/prompts/code_generation/ai_gateway_messages.rb);
// payload and enhancer entries override the defaults (nil deletes).
func railsGenerationBody(above, below string, payload, enhancer map[string]any) string {
	pe := map[string]any{
		"examples_array":               []any{map[string]any{"example": "# print hello", "response": "print('hello')", "trigger_type": "comment"}},
		"trimmed_content_above_cursor": above,
		"trimmed_content_below_cursor": below,
		"related_files":                []any{"<file_content file_name=\"lib/sizes.py\">\nKB = 1024\n</file_content>\n"},
		"related_snippets":             []any{},
		"libraries":                    []any{"requests", "numpy"},
		"user_instruction":             railsDefaultInstruction,
	}
	p := map[string]any{
		"file_name": "util.py", "content_above_cursor": above, "content_below_cursor": below,
		"language_identifier": "Python", "stream": false, "prompt_id": "code_suggestions/generations",
		"prompt_version": "^1.0.0", "prompt_enhancer": pe,
	}
	for k, v := range enhancer {
		pe[k] = v
	}
	for k, v := range payload {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	b, err := json.Marshal(map[string]any{
		"prompt_components": []any{map[string]any{"type": "code_editor_generation", "payload": p}},
		"model_metadata": map[string]any{"provider": "openai", "name": "general", "endpoint": "http://vllm.internal:8000/v1",
			"api_key": "secret-key", "identifier": "custom_openai/Qwen2.5-Coder"},
		"intent": "generation", "project_path": "group/project", "generation_type": "comment",
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// completionComponentBody is a /v3 code_editor_completion (what the IDE
// sends through /v3 when it asks for a completion).
const completionComponentBody = `{"prompt_components":[{"type":"code_editor_completion","payload":{"file_name":"main.go",` +
	`"content_above_cursor":"func add(a, b int) int {\n\t","content_below_cursor":"\n}\n","language_identifier":"go"}},` +
	`{"type":"code_context","payload":{"type":"file","name":"math.go","content":"func sub(a, b int) int { return a - b }"}}]}`

const sizePrefix = "import os\n\n# return the size of a file in bytes\n"

func TestGenerationRequestToModel(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) {
		return "```python\ndef file_size(path):\n    return os.path.getsize(path)\n```", nil
	}
	tests := []struct {
		name, path, body string
		want             []string // in the prompt
		not              []string
	}{
		{"Rails default instruction: the comment is the instruction", "/v3/code/completions", railsGenerationBody(sizePrefix, "\n", nil, nil),
			[]string{"Instruction: return the size of a file in bytes", "KB = 1024", "Libraries the project uses: requests, numpy", "File: util.py", "Language: Python",
				"# return the size of a file in bytes\n<CURSOR>\n"},
			[]string{railsDefaultInstruction, "secret-key", "print('hello')"}},
		{"explicit instruction on v4", "/v4/code/suggestions", railsGenerationBody(sizePrefix, "", nil, map[string]any{"user_instruction": "Write it with pathlib"}),
			[]string{"Instruction: Write it with pathlib"}, nil},
		{"no enhancer: code_context components", "/v3/code/completions",
			`{"prompt_components":[{"type":"code_context","payload":{"type":"snippet","name":"helpers","content":"def kb(n): return n * 1024"}},` +
				`{"type":"code_editor_generation","payload":{"file_name":"util.py","content_above_cursor":"# add two numbers\n","content_below_cursor":""}}]}`,
			[]string{"snippet helpers\ndef kb(n): return n * 1024", "Instruction: add two numbers"}, nil},
		{"only trimmed content sent", "/v3/code/completions", railsGenerationBody("", "", map[string]any{"content_above_cursor": nil, "content_below_cursor": nil},
			map[string]any{"trimmed_content_above_cursor": sizePrefix}),
			[]string{"Instruction: return the size of a file in bytes"}, nil},
		{"odd enhancer field types are ignored", "/v3/code/completions", railsGenerationBody(sizePrefix, "", nil,
			map[string]any{"libraries": 5, "related_files": "x", "related_snippets": []any{map[string]any{"name": "snip", "content": "S = 1"}, 7}}),
			[]string{"snip\nS = 1"}, []string{"Libraries"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post(tc.path, tc.body)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var got completionResponse
			if err := json.Unmarshal(r.body, &got); err != nil || len(got.Choices) != 1 ||
				got.Choices[0].Text != "def file_size(path):\n    return os.path.getsize(path)" {
				t.Fatalf("answer %s: %v", r.body, err)
			}
			req := h.model.lastChat(t)
			if req.Model != "chat-model" || req.MaxTokens != 2048 || req.Temperature == nil || *req.Temperature != 0.2 {
				t.Errorf("model request: model %q max_tokens %d temperature %v", req.Model, req.MaxTokens, req.Temperature)
			}
			u := userText(req)
			for _, w := range tc.want {
				if !strings.Contains(u, w) {
					t.Errorf("prompt lacks %q:\n%s", w, u)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(u, w) {
					t.Errorf("prompt has %q", w)
				}
			}
		})
	}
}

func TestSuggestionsCompletionComponent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) { return "return a + b", nil }
	r := h.post("/v3/code/completions", completionComponentBody)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	checkGolden(t, "v3_completion", r.body)
	req := h.model.lastChat(t)
	if u := userText(req); req.Model != "code-model" || req.MaxTokens != 128 || !strings.Contains(u, "math.go\nfunc sub") {
		t.Errorf("model request %q %d:\n%s", req.Model, req.MaxTokens, u)
	}
}

func TestGenerationResponseGolden(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) {
		return "```python\ndef file_size(path):\n    return os.path.getsize(path)\n```", nil
	}
	hdr := h.headers(gitlabtest.TokenOptions{})
	hdr.Set("X-Gitlab-Enabled-Feature-Flags", "code_generation_flag")
	for _, path := range []string{"/v3/code/completions", "/v4/code/suggestions"} {
		r := h.do(http.MethodPost, path, railsGenerationBody(sizePrefix, "", nil, nil), hdr)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		checkGolden(t, "v3_generation", r.body) // v4 answers non-streams like v3
	}
	h.model.Reply = func(any) (string, error) { return "  \n", nil }
	r := h.post("/v3/code/completions", railsGenerationBody(sizePrefix, "", nil, nil))
	checkGolden(t, "v3_generation_empty", r.body)
}

func TestGenerationStreams(t *testing.T) {
	deltas := []string{"```py", "thon\ndef file_size(path):\n", "    return os.pa", "th.getsize(path)\n", "```\n", "This uses os.path."}
	want := "def file_size(path):\n    return os.path.getsize(path)\n"
	stream := map[string]any{"stream": true}

	t.Run("v3 raw text", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.model.Deltas = func(any) []string { return deltas }
		r := h.post("/v3/code/completions", railsGenerationBody(sizePrefix, "", stream, nil))
		if r.status != 200 || r.header.Get("Content-Type") != contentTypeEventStream || string(r.body) != want {
			t.Fatalf("%d %q %q", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
	t.Run("v4 SSE", func(t *testing.T) {
		var sm *scriptedModel
		h := newHarness(t, harnessOptions{options: func(o *Options) {
			sm = &scriptedModel{fakeModel: o.Model.(*fakeModel), deltas: deltas}
			o.Model = sm
		}})
		r := h.post("/v4/code/suggestions", railsGenerationBody(sizePrefix, "", stream, nil))
		if r.status != 200 || r.header.Get("Content-Type") != contentTypeEventStream || r.header.Get("X-Streaming-Format") != "sse" {
			t.Fatalf("%d %q %q %s", r.status, r.header.Get("Content-Type"), r.header.Get("X-Streaming-Format"), r.body)
		}
		evs := parseSSE(t, r.body)
		if got := sseText(t, evs); got != want {
			t.Errorf("content %q, want %q", got, want)
		}
		var start struct {
			Metadata responseMetadata `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(evs[0].Data), &start); err != nil || start.Metadata.Model.Name != "chat-model" || start.Metadata.Timestamp == 0 {
			t.Errorf("stream_start %s: %v", evs[0].Data, err)
		}
		checkGolden(t, "v4_stream", r.body)
		// The block closed after the fifth delta: the model was stopped
		// rather than left generating prose nobody sees.
		if n := sm.accepted.Load(); n != 5 {
			t.Errorf("the gateway took %d deltas, want 5 (up to the closing fence)", n)
		}
	})
	t.Run("v4 empty answer", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.model.Deltas = func(any) []string { return nil }
		r := h.post("/v4/code/suggestions", railsGenerationBody(sizePrefix, "", stream, nil))
		if evs := parseSSE(t, r.body); r.status != 200 || sseText(t, evs) != "" || len(evs) != 2 {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("v4 failure after the first delta ends the stream", func(t *testing.T) {
		h := newHarness(t, harnessOptions{options: func(o *Options) {
			o.Model = &scriptedModel{fakeModel: o.Model.(*fakeModel), deltas: []string{"def f():\n", "    ret"},
				midFail: &model.Error{Status: 502, Type: "bad_gateway", Message: "stream reset"}}
		}})
		r := h.post("/v4/code/suggestions", railsGenerationBody(sizePrefix, "", stream, nil))
		if r.status != 200 || sseText(t, parseSSE(t, r.body)) != "def f():\n    ret" {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("v3 failure after the first delta ends the stream", func(t *testing.T) {
		h := newHarness(t, harnessOptions{options: func(o *Options) {
			o.Model = &scriptedModel{fakeModel: o.Model.(*fakeModel), deltas: []string{"x = 1\n"},
				midFail: &model.Error{Status: 502, Type: "bad_gateway", Message: "stream reset"}}
		}})
		r := h.post("/v3/code/completions", railsGenerationBody(sizePrefix, "", stream, nil))
		if r.status != 200 || string(r.body) != "x = 1\n" {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("failure before the first delta is an HTTP error", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.model.Reply = func(any) (string, error) {
			return "", &model.Error{Status: 503, Type: "service_unavailable", Message: "attesting"}
		}
		for _, path := range []string{"/v3/code/completions", "/v4/code/suggestions"} {
			r := h.post(path, railsGenerationBody(sizePrefix, "", stream, nil))
			if r.status != 503 || string(r.body) != `{"detail":"`+detailNotReady+`attesting"}` {
				t.Fatalf("%s: %d %q", path, r.status, r.body)
			}
		}
	})
}

func TestSuggestionsScopes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	forbidden := `{"detail":"` + msgSuggestionsForbidden + `"}`
	tests := []struct {
		name, path, body string
		scopes           []string
		status           int
		want             string
	}{
		{"generation needs generate_code", "/v3/code/completions", railsGenerationBody(sizePrefix, "", nil, nil), []string{"complete_code"}, 403, forbidden},
		{"generation on v4 needs generate_code", "/v4/code/suggestions", railsGenerationBody(sizePrefix, "", nil, nil), []string{"complete_code"}, 403, forbidden},
		{"completion needs complete_code", "/v3/code/completions", completionComponentBody, []string{"generate_code"}, 403, forbidden},
		{"generation with generate_code", "/v3/code/completions", railsGenerationBody(sizePrefix, "", nil, nil), []string{"generate_code"}, 200, ""},
		{"completion with complete_code", "/v4/code/suggestions", completionComponentBody, []string{"complete_code"}, 200, ""},
		{"neither", "/v3/code/completions", completionComponentBody, []string{"duo_chat"}, 403, `{"detail":"Unauthorized to access 'generate_code'"}`},
		{"legacy generations need generate_code", "/v2/code/generations", railsCompletionBody("# add\n", "", nil), []string{"complete_code"}, 403,
			`{"detail":"Unauthorized to access code generations"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPost, tc.path, tc.body, h.headers(gitlabtest.TokenOptions{Scopes: tc.scopes}))
			if r.status != tc.status || (tc.want != "" && string(r.body) != tc.want) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}

func TestSuggestionsValidation(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	many := make([]any, 101)
	for i := range many {
		many[i] = map[string]any{"type": "code_context", "payload": map[string]any{"type": "file", "name": "f", "content": "x"}}
	}
	manyBody, _ := json.Marshal(map[string]any{"prompt_components": many})
	tests := []struct {
		name, body, detail string
	}{
		{"no components", `{"prompt_components":[]}`, "prompt_components must have 1 to 100 items, not 0"},
		{"missing components", `{"model_metadata":{}}`, "prompt_components must have 1 to 100 items, not 0"},
		{"too many components", string(manyBody), "not 101"},
		{"components not a list", `{"prompt_components":{}}`, "prompt_components must be an array, not object"},
		{"unknown type", `{"prompt_components":[{"type":"code_editor_magic","payload":{}}]}`, "prompt_components[0].type must be"},
		{"only context", `{"prompt_components":[{"type":"code_context","payload":{"type":"file","name":"a","content":"b"}}]}`, "has no code_editor_completion or code_editor_generation"},
		{"content too long", railsGenerationBody(strings.Repeat("x", maxEditorContent+1), "", nil, nil), "prompt_components[0].payload.content_above_cursor is longer than 100000"},
		{"file name too long", railsGenerationBody("", "", map[string]any{"file_name": strings.Repeat("a", 256)}, nil), "prompt_components[0].payload.file_name is longer than 255"},
		{"context content too long", `{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"a.py"}},` +
			`{"type":"code_context","payload":{"type":"file","name":"a","content":"` + strings.Repeat("x", maxContextContent+1) + `"}}]}`, "prompt_components[1].payload is too long"},
		{"enhancer not an object", railsGenerationBody("", "", map[string]any{"prompt_enhancer": "x"}, nil), "prompt_components.payload.prompt_enhancer must be an object, not string"},
		{"model_metadata not an object", `{"prompt_components":[{"type":"code_editor_generation","payload":{}}],"model_metadata":[]}`, "model_metadata must be an object, not array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v3/code/completions", "/v4/code/suggestions"} {
				r := h.post(path, tc.body)
				if r.status != 422 || !strings.HasPrefix(string(r.body), `{"detail":"Validation error: `) || !strings.Contains(string(r.body), tc.detail) {
					t.Fatalf("%s: %d %s", path, r.status, r.body)
				}
			}
		})
	}
	if n := h.model.calls(); n != 0 {
		t.Errorf("invalid requests reached the model %d times", n)
	}
}

func TestSuggestionsAllowedModels(t *testing.T) {
	h := newHarness(t, harnessOptions{models: &Models{Default: "qwen-coder", Allowed: []string{"qwen-coder"}}})
	r := h.post("/v3/code/completions", railsGenerationBody(sizePrefix, "", nil, nil))
	if r.status != 422 || !strings.Contains(string(r.body), `model \"Qwen2.5-Coder\" is not allowed by the appliance; allowed: qwen-coder`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestGenerationsV2(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.model.Reply = func(any) (string, error) { return "```ruby\ndef add(a, b)\n  a + b\nend\n```", nil }
	r := h.post("/v2/code/generations", railsCompletionBody("# add two numbers\n", "", map[string]any{"prompt": "vendor prompt"}))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	checkGolden(t, "v2_generation", r.body)
	req := h.model.lastChat(t)
	if u := userText(req); req.Model != "chat-model" || req.MaxTokens != 2048 || !strings.Contains(u, "Instruction: add two numbers") || strings.Contains(u, "vendor prompt") {
		t.Errorf("model request %q %d:\n%s", req.Model, req.MaxTokens, u)
	}
	h.model.Deltas = func(any) []string { return []string{"```ruby\n", "x\n", "```"} }
	r = h.post("/v2/code/generations", railsCompletionBody("# add two numbers\n", "", map[string]any{"stream": true}))
	if r.status != 200 || string(r.body) != "x\n" || r.header.Get("Content-Type") != contentTypeEventStream {
		t.Fatalf("stream: %d %q", r.status, r.body)
	}
}

func TestGenerationStreamClientGone(t *testing.T) {
	var em *endlessModel
	h := newHarness(t, harnessOptions{options: func(o *Options) {
		em = &endlessModel{fakeModel: o.Model.(*fakeModel), ended: make(chan struct{})}
		o.Model = em
	}})
	req, err := http.NewRequest(http.MethodPost, h.url+"/v3/code/completions",
		strings.NewReader(railsGenerationBody(sizePrefix, "", map[string]any{"stream": true}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.headers(gitlabtest.TokenOptions{})
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || !strings.HasPrefix(string(buf), "line_0 = 0\n") {
		t.Fatalf("%q: %v", buf, err)
	}
	resp.Body.Close() // GitLab went away
	select {
	case <-em.ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the model call went on after the client left")
	}
	if _, streams := h.s.InFlight(); streams != 0 {
		// The stream writer returns right after the model call ends.
		for deadline := time.Now().Add(20 * time.Second); streams != 0 && time.Now().Before(deadline); _, streams = h.s.InFlight() {
			time.Sleep(5 * time.Millisecond)
		}
		if streams != 0 {
			t.Fatalf("%d streams still open", streams)
		}
	}
}
