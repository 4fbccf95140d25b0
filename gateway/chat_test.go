package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// failingModel wraps a model and fails a stream after `after` deltas
// (never when negative), as a backend cut off mid-answer does.
type failingModel struct {
	Model
	after atomic.Int64
	err   error
}

func (f *failingModel) ChatStream(ctx context.Context, r model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	n := f.after.Load()
	return f.Model.ChatStream(ctx, r, func(d string) error {
		if n == 0 {
			return f.err
		}
		n--
		return onDelta(d)
	})
}

// chatEvents decodes an ndjson body.
func chatEvents(t *testing.T, body []byte) []chatEvent {
	t.Helper()
	var out []chatEvent
	for _, l := range lines(body) {
		var ev struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", l, err)
		}
		out = append(out, chatEvent{Type: ev.Type, Data: ev.Data})
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		t.Errorf("body does not end with a newline (Rails splits on }\\n)")
	}
	return out
}

// answerText concatenates the final_answer_delta texts, as Rails does, and
// checks that only the last delta carries finish_reason.
func answerText(t *testing.T, evs []chatEvent) string {
	t.Helper()
	var b strings.Builder
	var deltas []answerDelta
	for _, ev := range evs {
		if ev.Type == "final_answer_delta" {
			var d answerDelta
			if err := json.Unmarshal(ev.Data.(json.RawMessage), &d); err != nil {
				t.Fatal(err)
			}
			deltas = append(deltas, d)
			b.WriteString(d.Text)
		}
	}
	for i, d := range deltas {
		if (d.FinishReason != "") != (i == len(deltas)-1) && evs[len(evs)-1].Type != "error" {
			t.Errorf("delta %d finish_reason %q", i, d.FinishReason)
		}
	}
	return b.String()
}

const chatHistory = `{"role":"user","content":"What is a runner?"},{"role":"assistant","content":"A runner runs CI jobs."},`

func TestChatAgent(t *testing.T) {
	fail := &failingModel{err: &model.Error{Status: 502, Type: "upstream_error", Message: "the model stream broke"}}
	h := newHarness(t, harnessOptions{options: func(o *Options) { fail.Model = o.Model; o.Model = fail }})
	settings, _ := prompts.SettingsFor(prompts.DuoChat)
	steps := []prompts.ScratchpadStep{{Thought: "I need the issue.", Tool: "issue_reader", ToolInput: "What is #1 about?", Observation: "Issue #1: Fix the login page. Users cannot sign in."}}
	tests := []struct {
		name   string
		body   string
		reply  string
		deltas []string
		err    error
		after  int64 // fail the stream after this many deltas
		// answer is the concatenated final answer ("" when none).
		answer string
		// roles of the messages that reached the model.
		roles []string
		check func(t *testing.T, req model.ChatRequest)
	}{
		{name: "final_answer_streamed",
			body: `{"messages":[` + chatHistory + `{"role":"user","content":"How do I register one?",
				"context":{"type":"issue","title":"Runner setup"},
				"current_file":{"file_path":"ci/.gitlab-ci.yml","data":"build:\n  script: make","selected_code":true},
				"additional_context":[{"category":"file","id":"README.md","content":"Read me first","metadata":{"x":1}}]}],
				"model_metadata":{"provider":"openai","name":"general","endpoint":"http://10.0.0.1/v1","api_key":"k","identifier":""},
				"unavailable_resources":["Pipelines","Vulnerabilities"]}`,
			deltas: []string{"Thought: The user asks how to register a runner.\n", "Final ", "Answer: ", "Run `gitlab-runner ", "register` ", "on the ", "machine.", "\n\nThen ", "pick an executor."},
			answer: "Run `gitlab-runner register` on the machine.\n\nThen pick an executor.",
			roles:  []string{"system", "user", "assistant", "user"},
			check: func(t *testing.T, req model.ChatRequest) {
				sys := req.Messages[0].Content
				for _, tool := range chatTools {
					if !strings.Contains(sys, "- "+tool.Name+": ") {
						t.Errorf("system prompt lacks tool %s", tool.Name)
					}
				}
				if !strings.Contains(sys, "no access to: Pipelines, Vulnerabilities") || !strings.Contains(sys, "Today is ") {
					t.Errorf("system prompt: %s", sys)
				}
				if req.Messages[1].Content != "What is a runner?" || req.Messages[2].Content != "A runner runs CI jobs." {
					t.Errorf("history: %+v", req.Messages[1:3])
				}
				user := req.Messages[3].Content
				for _, want := range []string{`<current_page type="issue">`, "Its title is: Runner setup",
					`<current_file path="ci/.gitlab-ci.yml" kind="selected code">` + "\nbuild:\n  script: make\n</current_file>",
					`<additional_context category="file" id="README.md">` + "\nRead me first\n</additional_context>"} {
					if !strings.Contains(user, want) {
						t.Errorf("user message lacks %q:\n%s", want, user)
					}
				}
				if !strings.HasSuffix(user, "\n\nHow do I register one?") {
					t.Errorf("the question is not last:\n%s", user)
				}
				if req.Model != "chat-model" || req.MaxTokens != settings.MaxTokens || !reflect.DeepEqual(req.Stop, settings.Stop) ||
					req.Temperature == nil || *req.Temperature != settings.Temperature {
					t.Errorf("call parameters: model %q max %d stop %q temp %v", req.Model, req.MaxTokens, req.Stop, req.Temperature)
				}
			}},
		{name: "action",
			body:  `{"messages":[{"role":"user","content":"What is #1 about?"}]}`,
			reply: "Thought: I need to read the issue.\nAction: IssueReader\nAction Input: What is #1 about?",
			roles: []string{"system", "user"},
			check: func(t *testing.T, req model.ChatRequest) {
				if !strings.Contains(req.Messages[0].Content, "Merge Requests, Pipelines, Vulnerabilities") {
					t.Errorf("GitLab's default unavailable resources missing: %s", req.Messages[0].Content)
				}
			}},
		{name: "scratchpad_follow_up",
			body: `{"messages":[{"role":"user","content":"What is #1 about?"},
				{"role":"assistant","content":null,"agent_scratchpad":[{"action":{"thought":"I need the issue.","tool":"issue\\_reader","tool_input":"What is #1 about?"},
				"observation":"Issue #1: Fix the login page. Users cannot sign in."}]}],"unavailable_resources":[]}`,
			deltas: []string{"Thought: I have the issue.\nFinal Answer: Issue #1 is about ", "fixing the login page."},
			answer: "Issue #1 is about fixing the login page.",
			roles:  []string{"system", "user", "assistant"},
			check: func(t *testing.T, req model.ChatRequest) {
				if got, want := req.Messages[2].Content, prompts.ScratchpadText(steps); got != want {
					t.Errorf("transcript %q, want %q", got, want)
				}
				if strings.Contains(req.Messages[0].Content, "no access to") {
					t.Errorf("empty unavailable_resources listed: %s", req.Messages[0].Content)
				}
			}},
		{name: "legacy_options_scratchpad",
			body: `{"messages":[{"role":"user","content":"What is #1 about?"}],
				"options":{"agent_scratchpad":{"agent_type":"react","steps":[{"thought":"I need the issue.","tool":"issue_reader","tool_input":"What is #1 about?","observation":"Issue #1: Fix the login page. Users cannot sign in."}]}}}`,
			reply:  "Final Answer: It is about the login page.",
			answer: "It is about the login page.",
			roles:  []string{"system", "user", "assistant"},
			check: func(t *testing.T, req model.ChatRequest) {
				if got, want := req.Messages[2].Content, prompts.ScratchpadText(steps); got != want {
					t.Errorf("transcript %q, want %q", got, want)
				}
			}},
		{name: "unknown_tool", body: `{"messages":[{"role":"user","content":"Delete it"}]}`,
			reply: "Thought: I will delete it.\nAction: project_deleter\nAction Input: all", roles: []string{"system", "user"}},
		{name: "truncated", body: `{"messages":[{"role":"user","content":"What is #1 about?"}]}`,
			reply: "Thought: I need the issue.\nAction: issue_reader", roles: []string{"system", "user"}},
		{name: "model_error_before_stream", body: `{"messages":[{"role":"user","content":"Hi"}]}`,
			err: &model.Error{Status: 503, Type: "service_unavailable", Message: "attesting the backend"}, roles: []string{"system", "user"}},
		{name: "model_error_during_stream", body: `{"messages":[{"role":"user","content":"Hi"}]}`,
			deltas: []string{"Final Answer: Hello ", "there, ", "how ", "are ", "you?"}, after: 3,
			answer: "Hello there, how", roles: []string{"system", "user"}},
		{name: "prompt_too_long", body: `{"messages":[{"role":"user","content":"Hi"}]}`,
			err:   &model.Error{Status: 400, Type: "BadRequestError", Message: "This model's maximum context length is 32768 tokens."},
			roles: []string{"system", "user"}},
		{name: "rate_limited", body: `{"messages":[{"role":"user","content":"Hi"}]}`,
			err: &model.Error{Status: 429, Type: "rate_limit", Message: "slow down"}, roles: []string{"system", "user"}},
		{name: "think_stripped", body: `{"messages":[{"role":"user","content":"Hi"}]}`,
			deltas: []string{"<think>", "The user greets; the secret plan is", "</think>\n", "Thought: greet back\n", "Final Answer: Hello!"},
			answer: "Hello!", roles: []string{"system", "user"}},
		{name: "plain_reply", body: `{"messages":[{"role":"user","content":"Hi"}]}`,
			reply: "Hello! How can I help?", answer: "Hello! How can I help?", roles: []string{"system", "user"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.model.Reply = func(any) (string, error) { return tc.reply, tc.err }
			h.model.Deltas = nil
			if tc.deltas != nil {
				h.model.Deltas = func(any) []string { return tc.deltas }
			}
			fail.after.Store(-1)
			if tc.after > 0 {
				fail.after.Store(tc.after)
			}
			r := h.post("/v2/chat/agent", tc.body)
			if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson; charset=utf-8" {
				t.Fatalf("%d %q %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			req := h.model.lastChat(t)
			var roles []string
			for _, m := range req.Messages {
				roles = append(roles, m.Role)
			}
			if !reflect.DeepEqual(roles, tc.roles) {
				t.Errorf("roles %v, want %v", roles, tc.roles)
			}
			if tc.check != nil {
				tc.check(t, req)
			}
			evs := chatEvents(t, r.body)
			if got := answerText(t, evs); got != tc.answer {
				t.Errorf("answer %q, want %q", got, tc.answer)
			}
			if bytes.Contains(r.body, []byte("Final Answer")) || bytes.Contains(r.body, []byte("think")) || bytes.Contains(r.body, []byte("secret")) {
				t.Errorf("marker or reasoning reached GitLab: %s", r.body)
			}
			testutil.Golden(t, filepath.Join("testdata", "chat", tc.name+".ndjson"), r.body)
		})
	}
}

func TestChatAgentRefusals(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	user := `{"role":"user","content":"Hi"}`
	tests := []struct {
		name   string
		body   string
		scopes []string
		status int
		detail string // prefix of detail
	}{
		{"not JSON", `{"messages":`, nil, 422, "Validation error: the body is not valid JSON"},
		{"no messages", `{}`, nil, 422, "Validation error: messages must not be empty"},
		{"messages not a list", `{"messages":{"role":"user"}}`, nil, 422, "Validation error: messages must be"},
		{"content not a string", `{"messages":[{"role":"user","content":42}]}`, nil, 422, "Validation error: messages.content must be"},
		{"unknown role", `{"messages":[{"role":"system","content":"x"},` + user + `]}`, nil, 422, `Validation error: messages[0].role must be "user" or "assistant"`},
		{"no question", `{"messages":[{"role":"user","content":"  "}]}`, nil, 422, "Validation error: messages[0].content must be the user's question"},
		{"answer last", `{"messages":[` + user + `,{"role":"assistant","content":"Hello"}]}`, nil, 422, "Validation error: the last message must be the user's question"},
		{"only a step in progress", `{"messages":[{"role":"assistant","content":null,"agent_scratchpad":[]}]}`, nil, 422, "Validation error: the last message must be the user's question"},
		{"scratchpad on a user message", `{"messages":[{"role":"user","content":"x","agent_scratchpad":[]}]}`, nil, 400, "agent_scratchpad can only be present when role is ASSISTANT"},
		{"unknown context category", `{"messages":[{"role":"user","content":"x","additional_context":[{"category":"secrets"}]}]}`, nil, 422,
			"Validation error: messages[0].additional_context[0].category must be one of file, snippet"},
		{"context without its scope", `{"messages":[{"role":"user","content":"x","additional_context":[{"category":"issue","id":"1","content":"c"}]}]}`,
			nil, 403, "Unauthorized to access include_issue_context"},
		{"context in history without its scope", `{"messages":[{"role":"user","content":"x","additional_context":[{"category":"terminal","content":"ls"}]},
			{"role":"assistant","content":"ok"},` + user + `]}`, []string{"duo_chat", "include_file_context"}, 403, "Unauthorized to access include_terminal_context"},
		{"chat scope missing", `{"messages":[` + user + `]}`, []string{"include_file_context"}, 403, "Unauthorized to access duo chat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPost, "/v2/chat/agent", tc.body, h.headers(gitlabtest.TokenOptions{Scopes: tc.scopes}))
			var got struct{ Detail string }
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != tc.status || !strings.HasPrefix(got.Detail, tc.detail) {
				t.Fatalf("%d %s, want %d %q", r.status, r.body, tc.status, tc.detail)
			}
		})
	}
	if n := h.model.calls(); n != 0 {
		t.Errorf("refused requests reached the model %d times", n)
	}
	// With the scope, the same context is accepted.
	r := h.do(http.MethodPost, "/v2/chat/agent", `{"messages":[{"role":"user","content":"x","additional_context":[{"category":"issue","id":"1","content":"c"}]}]}`,
		h.headers(gitlabtest.TokenOptions{Scopes: []string{"duo_classic_chat", "include_issue_context"}}))
	if r.status != 200 || !strings.Contains(h.model.lastChat(t).Messages[1].Content, `<additional_context category="issue" id="1">`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestChatAgentModelNotAllowed(t *testing.T) {
	h := newHarness(t, harnessOptions{models: &Models{Default: "chat-model", Allowed: []string{"chat-model"}}})
	r := h.post("/v2/chat/agent", `{"messages":[{"role":"user","content":"Hi"}],"model_metadata":{"identifier":"custom_openai/other"}}`)
	if r.status != 422 || !strings.Contains(string(r.body), `model \"other\" is not allowed`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestChatAgentBudget(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	settings, _ := prompts.SettingsFor(prompts.DuoChat)
	big := strings.Repeat("0123456789abcdef\n", settings.InputTokens) // 4x the whole budget
	var msgs []string
	for range 40 {
		msgs = append(msgs, `{"role":"user","content":`+jsonString(big[:20000])+`},{"role":"assistant","content":"ok"}`)
	}
	body := `{"messages":[` + strings.Join(msgs, ",") + `,{"role":"user","content":"Summarize","current_file":{"file_path":"big.txt","data":` +
		jsonString(big) + `,"selected_code":false},"additional_context":[{"category":"file","id":"small","content":"tiny file"}]},
		{"role":"assistant","content":null,"agent_scratchpad":[{"action":{"thought":"t","tool":"issue_reader","tool_input":"i"},"observation":` + jsonString(big) + `}]}]}`
	r := h.post("/v2/chat/agent", body)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	req := h.model.lastChat(t)
	total := 0
	for _, m := range req.Messages[1:] {
		total += prompts.EstimateTokens(m.Content)
	}
	if total > settings.InputTokens+settings.InputTokens/20 {
		t.Errorf("prompt of %d tokens exceeds the budget of %d", total, settings.InputTokens)
	}
	n := len(req.Messages)
	user, transcript := req.Messages[n-2].Content, req.Messages[n-1].Content
	if req.Messages[1].Role != "user" || !strings.Contains(user, "tiny file") || !strings.Contains(user, trimmedNote) ||
		!strings.HasSuffix(user, "Summarize") || !strings.Contains(transcript, trimmedNote) || n < 4 || n > 40 {
		t.Errorf("%d messages; user %d bytes; transcript %d bytes", n, len(user), len(transcript))
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// unendingStream streams answer text until the client stops reading.
type unendingStream struct {
	Model
	ended chan error
}

func (b *unendingStream) ChatStream(ctx context.Context, _ model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	err := onDelta("Final Answer: start\n")
	for err == nil && ctx.Err() == nil {
		err = onDelta(strings.Repeat("word ", 200))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		err = context.Cause(ctx)
	}
	b.ended <- err
	return model.Result{}, err
}

func TestChatAgentClientGoneStopsModel(t *testing.T) {
	bm := &unendingStream{ended: make(chan error, 1)}
	h := newHarness(t, harnessOptions{options: func(o *Options) { bm.Model = o.Model; o.Model = bm }})
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, h.url+"/v2/chat/agent", strings.NewReader(`{"messages":[{"role":"user","content":"Hi"}]}`))
	req.Header = h.headers(gitlabtest.TokenOptions{})
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case err := <-bm.ended:
		// Either the connection watch cancelled the call or a write to
		// the gone client failed first.
		if !errors.Is(err, errClientGone) && !errors.Is(err, fastserve.ErrClientGone) {
			t.Errorf("the model call ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the model kept streaming after GitLab went away")
	}
}

func TestChunkText(t *testing.T) {
	s := strings.Repeat("héllo wörld ", 100)
	parts := chunkText(s, 50)
	if strings.Join(parts, "") != s || len(parts) < 20 {
		t.Fatalf("%d parts", len(parts))
	}
	for _, p := range parts {
		if len(p) > 50 || !strings.HasSuffix(p, " ") && p != parts[len(parts)-1] {
			t.Errorf("part %q", p)
		}
	}
	if got := chunkText("", 10); len(got) != 1 || got[0] != "" {
		t.Errorf("empty: %q", got)
	}
}
