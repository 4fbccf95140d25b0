package chat

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// fakeSession answers runHTTPRequest from the demo GitLab API and records
// every other action.
type fakeSession struct {
	start   *contract.StartWorkflowRequest
	caller  flow.Caller
	api     *gitlabtest.API
	actions []*contract.Action
	answer  func(a *contract.Action) *contract.ActionResponse
}

func (f *fakeSession) Start() *contract.StartWorkflowRequest { return f.start }
func (f *fakeSession) Caller() flow.Caller                   { return f.caller }
func (f *fakeSession) Notify(_ context.Context, c *contract.NewCheckpoint) error {
	f.actions = append(f.actions, &contract.Action{Action: &contract.Action_NewCheckpoint{NewCheckpoint: c}})
	return nil
}
func (f *fakeSession) Do(_ context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	f.actions = append(f.actions, a)
	if h := a.GetRunHTTPRequest(); h != nil {
		req := httptest.NewRequest(h.GetMethod(), h.GetPath(), strings.NewReader(h.GetBody()))
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		f.api.ServeHTTP(rec, req)
		return &contract.ActionResponse{RequestID: a.RequestID, ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{StatusCode: int32(rec.Code), Body: rec.Body.String()}}}, nil
	}
	return f.answer(a), nil
}

type oneShotModel struct {
	results []model.Result
	reqs    []model.ChatRequest
}

func (m *oneShotModel) ChatStream(_ context.Context, r model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	m.reqs = append(m.reqs, r)
	res := m.results[0]
	m.results = m.results[1:]
	if res.Text != "" {
		_ = onDelta(res.Text)
	}
	return res, nil
}

func plain(s string) *contract.ActionResponse {
	return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Response: s}}}
}

// TestIDEToolsMCPAndBilling: an IDE executor with file privileges gets the
// local tools; an MCP tool runs as runMCPTool after approval is waived by
// its trusted flag; with billing enabled every model call is preceded by
// trackLlmCallForSelfHosted.
func TestIDEToolsMCPAndBilling(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	wf := api.Workflow("9")
	wf.Privileges = []string{PrivReadOnlyGitLab, PrivReadWriteFiles, PrivRunMCPTools}
	wf.PreApproved = []string{PrivReadOnlyGitLab}
	trusted := true
	s := &fakeSession{
		api: api,
		start: &contract.StartWorkflowRequest{WorkflowID: "9", WorkflowDefinition: "chat", Goal: "look around",
			McpTools: []*contract.McpTool{{Name: "jira_search", Description: "Search Jira", InputSchema: `{"type":"object","properties":{"q":{"type":"string"}}}`, Trusted: &trusted}}},
		caller: flow.Caller{ClientType: "vscode", BillingEnabled: true, Model: flow.Model{ID: "m", ContextWindow: 32000}},
		answer: func(a *contract.Action) *contract.ActionResponse {
			switch {
			case a.GetTrackLlmCallForSelfHosted() != nil:
				return plain("authenticated")
			case a.GetRunReadFile() != nil:
				return plain("file body")
			case a.GetRunMCPTool() != nil:
				return plain("JIRA-1 found")
			}
			return plain("")
		},
	}
	m := &oneShotModel{results: []model.Result{
		{ToolCalls: []model.ToolCall{{ID: "a", Function: model.ToolCallFunction{Name: "read_file", Arguments: `{"file_path":"main.go"}`}},
			{ID: "b", Function: model.ToolCallFunction{Name: "jira_search", Arguments: `{"q":"cart"}`}}}},
		{Text: "done"},
	}}
	calls := 0
	agent, _ := New(Options{Model: m, ModelCalls: func(model.Usage, error) { calls++ }})
	out, err := agent.Run(context.Background(), s)
	if err != nil || out != flow.InputRequired || calls != 2 {
		t.Fatalf("%v %v, %d model calls reported", out, err, calls)
	}
	names := map[string]bool{}
	for _, tl := range m.reqs[0].Tools {
		names[tl.Function.Name] = true
	}
	if !names["read_file"] || !names["jira_search"] || names["create_work_item_note"] || names["run_command"] {
		t.Fatalf("tools %v", names)
	}
	var kinds []string
	for _, a := range s.actions {
		switch {
		case a.GetTrackLlmCallForSelfHosted() != nil:
			if tr := a.GetTrackLlmCallForSelfHosted(); tr.GetWorkflowID() != "9" || tr.GetFeatureQualifiedName() != "chat" || tr.GetFeatureAiCatalogItem() {
				t.Fatalf("billing event %v", tr)
			}
			kinds = append(kinds, "track")
		case a.GetRunReadFile() != nil:
			kinds = append(kinds, "read")
		case a.GetRunMCPTool() != nil:
			if a.GetRunMCPTool().GetArgs() != `{"q":"cart"}` {
				t.Fatalf("mcp args %s", a.GetRunMCPTool().GetArgs())
			}
			kinds = append(kinds, "mcp")
		}
	}
	if strings.Join(kinds, ",") != "track,read,mcp,track" {
		t.Fatalf("action order %v", kinds)
	}
}

func TestTrimHistory(t *testing.T) {
	big := strings.Repeat("x", 30000)
	h := []model.Message{
		{Role: "user", Content: "first " + big},
		{Role: "assistant", ToolCalls: []model.ToolCall{{ID: "1", Function: model.ToolCallFunction{Name: "get_issue"}}}},
		{Role: "tool", ToolCallID: "1", Content: big},
		{Role: "assistant", Content: "answer"},
		{Role: "user", Content: "second"},
	}
	out := trimHistory("sys", h, nil, 16000)
	if out[0].Role != "system" || out[len(out)-1].Content != "second" {
		t.Fatalf("ends %v", out)
	}
	if out[1].Role == "tool" {
		t.Fatal("history starts with an orphaned tool result")
	}
	total := 0
	for _, m := range out {
		total += estimateTokens(m)
	}
	if total > 16000-answerTokens {
		t.Fatalf("over budget: %d", total)
	}
	// A single oversized message is cut, not dropped.
	out = trimHistory("sys", []model.Message{{Role: "user", Content: strings.Repeat("y", 100000)}}, nil, 8192)
	if len(out) != 2 || len(out[1].Content) == 0 || len(out[1].Content) >= 100000 {
		t.Fatalf("oversized last message: %d msgs", len(out))
	}
}

func TestCatalogueShape(t *testing.T) {
	seen := map[string]bool{}
	for _, spec := range Tools() {
		f := spec["function"].(map[string]any)
		n := f["name"].(string)
		if seen[n] || f["description"] == "" || f["parameters"].(map[string]any)["type"] != "object" {
			t.Fatalf("bad spec %v", spec)
		}
		seen[n] = true
	}
	// GitLab's UI has icons for these names: keep them.
	for _, n := range []string{"read_file", "edit_file", "create_file_with_contents", "grep", "list_dir", "gitlab_issue_search", "get_issue", "create_merge_request", "list_issue_notes", "create_commit"} {
		if !seen[n] {
			t.Errorf("catalogue lacks %s", n)
		}
	}
}

func TestBounds(t *testing.T) {
	long := strings.Repeat("a", maxToolResultBytes) + "THE ERROR"
	if got := boundTail(long); !strings.HasSuffix(got, "THE ERROR") || len(got) > maxToolResultBytes+64 {
		t.Fatalf("tail lost the end")
	}
	if got := boundResult(long); strings.Contains(got, "THE ERROR") || !strings.Contains(got, "truncated") {
		t.Fatalf("head kept too much")
	}
	for _, bad := range []any{".", "..", "a\nb"} {
		if _, err := str(map[string]any{"x": bad}, "x", true); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAdditionalContext(t *testing.T) {
	id := "src/cart.js"
	content := "export function total() {}"
	got := contextText([]*contract.AdditionalContext{{Category: "file", Id: &id, Content: &content}, {Category: "empty"}})
	if !strings.Contains(got, `category="file" id="src/cart.js"`) || !strings.Contains(got, content) || strings.Contains(got, "empty") {
		t.Fatalf("%q", got)
	}
	many := make([]*contract.AdditionalContext, 40)
	for i := range many {
		many[i] = &contract.AdditionalContext{Category: "file", Content: &content}
	}
	if n := strings.Count(contextText(many), "<additional_context"); n != maxContextItems {
		t.Fatalf("%d items rendered", n)
	}
}
