package flowengine

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeSession answers runHTTPRequest from the demo GitLab API and other
// actions with answer.
type fakeSession struct {
	mu      sync.Mutex
	start   *contract.StartWorkflowRequest
	caller  flow.Caller
	api     *gitlabtest.API
	actions []*contract.Action
	last    *contract.NewCheckpoint
	answer  func(a *contract.Action) *contract.ActionResponse
}

func (f *fakeSession) Start() *contract.StartWorkflowRequest { return f.start }
func (f *fakeSession) Caller() flow.Caller                   { return f.caller }
func (f *fakeSession) Notify(_ context.Context, c *contract.NewCheckpoint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = c
	return nil
}
func (f *fakeSession) Do(_ context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	f.mu.Lock()
	f.actions = append(f.actions, a)
	f.mu.Unlock()
	if h := a.GetRunHTTPRequest(); h != nil {
		req := httptest.NewRequest(h.GetMethod(), h.GetPath(), strings.NewReader(h.GetBody()))
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		f.api.ServeHTTP(rec, req)
		return &contract.ActionResponse{ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{StatusCode: int32(rec.Code), Body: rec.Body.String()}}}, nil
	}
	if f.answer == nil {
		return plain("", "no executor"), nil
	}
	return f.answer(a), nil
}

func plain(resp, errText string) *contract.ActionResponse {
	return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Response: resp, Error: errText}}}
}

// scriptedModel answers each call with the next scripted result (the last
// one repeats) and records requests.
type scriptedModel struct {
	mu      sync.Mutex
	results []model.Result
	reqs    []model.ChatRequest
}

func (m *scriptedModel) ChatStream(_ context.Context, r model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reqs = append(m.reqs, r)
	res := m.results[0]
	if len(m.results) > 1 {
		m.results = m.results[1:]
	}
	return res, nil
}

func call(id, name, args string) model.ToolCall {
	return model.ToolCall{ID: id, Type: "function", Function: model.ToolCallFunction{Name: name, Arguments: args}}
}

// echoTool is a read tool returning its arguments; failTool fails.
var testTools = flowtools.Merge([]*flowtools.Tool{
	{Name: "echo", Privilege: flowtools.ReadOnlyGitLab, Params: flowtools.Schema(nil),
		Run: func(_ context.Context, _ *flowtools.Env, a map[string]any) (string, error) {
			b, _ := json.Marshal(a)
			return string(b), nil
		}},
	{Name: "flaky", Privilege: flowtools.ReadOnlyGitLab, Params: flowtools.Schema(nil),
		Run: func(_ context.Context, _ *flowtools.Env, a map[string]any) (string, error) {
			if a["ok"] != true {
				return "", errors.New("ok must be true")
			}
			return "posted", nil
		}},
	{Name: "shell", Privilege: flowtools.RunCommands, Write: true, Params: flowtools.Schema(nil),
		Run: func(context.Context, *flowtools.Env, map[string]any) (string, error) { return "ran", nil }},
})

const routerFlow = `
version: v1
environment: ambient
prompts:
  - prompt_id: classify
    prompt_template: {system: "Classify the request.", user: "Request: {{goal}} / {{facts}}"}
  - prompt_id: fix
    prompt_template: {user: "Fix it: {{kind}}"}
components:
  - name: gather
    type: DeterministicStepComponent
    tool_name: echo
    inputs: [{from: "context:project_id", as: project_id}, {from: "hello", as: greeting, literal: true}]
    ui_log_events: [on_tool_execution_success]
  - name: classify
    type: AgentComponent
    prompt_id: classify
    toolset: [echo, shell, not_a_tool]
    inputs: ["context:goal", {from: "context:gather.tool_responses", as: facts}]
    ui_log_events: [on_tool_call_input, on_agent_final_answer]
  - name: fix
    type: OneOffComponent
    prompt_id: fix
    tool_name: flaky
    max_correction_attempts: 2
    inputs: [{from: "context:classify.final_answer", as: kind}]
    ui_log_events: [on_tool_execution_failed, on_tool_execution_success]
routers:
  - from: gather
    to: classify
  - from: classify
    condition:
      input: "context:classify.final_answer"
      routes: {bug: fix, feature: end}
  - {from: fix, to: end}
flow:
  entry_point: gather
`

func newSession(t *testing.T, api *gitlabtest.API, cfg string) *fakeSession {
	t.Helper()
	s := &fakeSession{api: api, start: &contract.StartWorkflowRequest{WorkflowID: "5", Goal: "the cart total is wrong"},
		caller: flow.Caller{Model: flow.Model{ID: "m", ContextWindow: 32000}}}
	if cfg != "" {
		var doc map[string]any
		if err := json.Unmarshal(yamlToJSON(t, cfg), &doc); err != nil {
			t.Fatal(err)
		}
		st, err := structpb.NewStruct(doc)
		if err != nil {
			t.Fatal(err)
		}
		s.start.FlowConfig = st
		v := "v1"
		s.start.FlowConfigSchemaVersion = &v
	}
	return s
}

func uiLog(t *testing.T, s *fakeSession) []map[string]any {
	t.Helper()
	var cp struct {
		ChannelValues struct {
			Log []map[string]any `json:"ui_chat_log"`
		} `json:"channel_values"`
	}
	if err := json.Unmarshal([]byte(s.last.GetCheckpoint()), &cp); err != nil {
		t.Fatal(err)
	}
	return cp.ChannelValues.Log
}

// TestInlineFlowWithRouter: an inline flowConfig runs a deterministic
// step, an agent whose answer routes to a one-off step that succeeds after
// one correction; the workflow ends FINISHED with the UI log the
// components asked for, and unknown or unpermitted tools never reach the
// model.
func TestInlineFlowWithRouter(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, routerFlow)
	m := &scriptedModel{results: []model.Result{
		{ToolCalls: []model.ToolCall{call("1", "echo", `{"q":"cart"}`)}},
		{ToolCalls: []model.ToolCall{call("2", FinalResponseTool, `{"final_response":"bug"}`)}},
		{ToolCalls: []model.ToolCall{call("3", "flaky", `{"ok":false}`)}},
		{ToolCalls: []model.ToolCall{call("4", "flaky", `{"ok":true}`)}},
	}}
	e, _ := New(Options{Model: m, Tools: testTools, ForceToolChoice: true})
	out, err := (&Inline{Engine: e}).Run(context.Background(), s)
	if err != nil || out != flow.Finished {
		t.Fatalf("%v %v", out, err)
	}
	if len(m.reqs) != 4 {
		t.Fatalf("%d model calls", len(m.reqs))
	}
	var names []string
	for _, tl := range m.reqs[0].Tools {
		names = append(names, tl.Function.Name)
	}
	if strings.Join(names, ",") != "echo,"+FinalResponseTool {
		t.Fatalf("agent tools %v (shell needs run_commands, not_a_tool is unknown)", names)
	}
	if got := m.reqs[0].Messages[1].Content; got != `Request: the cart total is wrong / {"greeting":"hello","project_id":"1"}` {
		t.Fatalf("user prompt %q", got)
	}
	if m.reqs[0].ToolChoice != "required" {
		t.Fatalf("agent tool choice %v", m.reqs[0].ToolChoice)
	}
	if tc, _ := json.Marshal(m.reqs[2].ToolChoice); string(tc) != `{"function":{"name":"flaky"},"type":"function"}` {
		t.Fatalf("one-off tool choice %s", tc)
	}
	if !strings.Contains(m.reqs[3].Messages[len(m.reqs[3].Messages)-1].Content, "ok must be true") {
		t.Fatal("the failed call's error was not fed back")
	}
	if s.last.GetStatus() != statusFinished || api.Workflow("5").Status != "finished" {
		t.Fatalf("status %s / %s", s.last.GetStatus(), api.Workflow("5").Status)
	}
	var kinds []string
	for _, e := range uiLog(t, s) {
		kinds = append(kinds, e["message_type"].(string)+":"+*strPtr(e["status"]))
	}
	want := "tool:success,tool:pending,agent:success,tool:failure,tool:success,workflow_end:success"
	if strings.Join(kinds, ",") != want {
		t.Fatalf("ui log %v, want %s", kinds, want)
	}
}

func strPtr(v any) *string {
	s, _ := v.(string)
	return &s
}

// TestBudgets: a looping agent is stopped by each budget; the workflow
// ends FAILED (Rails event drop) with the reason in the UI log.
func TestBudgets(t *testing.T) {
	loop := []model.Result{{ToolCalls: []model.ToolCall{call("x", "echo", `{}`)}, Usage: model.Usage{PromptTokens: 100, CompletionTokens: 10}}}
	for name, c := range map[string]struct {
		b    Budget
		want string
	}{
		"steps":      {Budget{MaxStepsPerComponent: 3}, "budget exceeded: model steps of component classify (3)"},
		"tool calls": {Budget{MaxToolCalls: 4}, "budget exceeded: tool calls (4)"},
		"tokens":     {Budget{MaxTokens: 250}, "budget exceeded: tokens (250)"},
	} {
		t.Run(name, func(t *testing.T) {
			api := gitlabtest.NewAPI("t")
			s := newSession(t, api, routerFlow)
			e, _ := New(Options{Model: &scriptedModel{results: loop}, Tools: testTools, Budget: c.b})
			_, err := (&Inline{Engine: e}).Run(context.Background(), s)
			var be *BudgetError
			if !errors.As(err, &be) || err.Error() != c.want {
				t.Fatalf("err %v, want %s", err, c.want)
			}
			log := uiLog(t, s)
			end := log[len(log)-1]
			if end["message_type"] != "workflow_end" || end["content"] != "The flow stopped: "+c.want {
				t.Fatalf("last log entry %v", end)
			}
			if s.last.GetStatus() != statusFailed || api.Workflow("5").Status != "failed" {
				t.Fatalf("status %s / %s", s.last.GetStatus(), api.Workflow("5").Status)
			}
		})
	}
}

// blockingModel waits until the call is cancelled.
type blockingModel struct{}

func (blockingModel) ChatStream(ctx context.Context, _ model.ChatRequest, _ func(string) error) (model.Result, error) {
	<-ctx.Done()
	return model.Result{}, ctx.Err()
}

// TestWallTime: a flow whose model never answers is failed by the wall
// time budget.
func TestWallTime(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, routerFlow)
	e, _ := New(Options{Model: blockingModel{}, Tools: testTools, Budget: Budget{WallTime: 50 * time.Millisecond}})
	_, err := (&Inline{Engine: e}).Run(context.Background(), s)
	if err == nil || err.Error() != "budget exceeded: wall time (50ms)" {
		t.Fatalf("err %v", err)
	}
	if api.Workflow("5").Status != "failed" {
		t.Fatal("workflow not failed")
	}
}

// TestInlineRefusals: a wrong schema version or an invalid config is the
// client's error with the key-naming reason; nothing runs.
func TestInlineRefusals(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, routerFlow)
	v := "v2"
	s.start.FlowConfigSchemaVersion = &v
	e, _ := New(Options{Model: &scriptedModel{}, Tools: testTools})
	_, err := (&Inline{Engine: e}).Run(context.Background(), s)
	var ce *flow.ClientError
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, `"v2"`) {
		t.Fatalf("%v", err)
	}
	s = newSession(t, api, routerFlow)
	s.start.FlowConfig.Fields["flow"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"entry_point": structpb.NewStringValue("nowhere")}})
	_, err = (&Inline{Engine: e}).Run(context.Background(), s)
	if !errors.As(err, &ce) || ce.Message != `Invalid flowConfig: flow config: flow.entry_point: "nowhere" is not a component` {
		t.Fatalf("%v", err)
	}
	if len(s.actions) != 0 {
		t.Fatal("an invalid flow sent actions")
	}
}

// TestDeterministicToolNotPermitted: a step whose tool the workflow may
// not use fails the flow with a clear reason.
func TestDeterministicToolNotPermitted(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, "")
	cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: ambient, components: [{name: run, type: DeterministicStepComponent, tool_name: shell}], routers: [{from: run, to: end}], flow: {entry_point: run}}`), flowconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := New(Options{Model: &scriptedModel{}, Tools: testTools})
	_, err = (&Defined{Engine: e, Config: cfg}).Run(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "component run failed: tool shell is not available") {
		t.Fatalf("%v", err)
	}
}

// TestStepFailureDetailStaysInUILog: a failing tool's text (which may
// quote user content) reaches the UI log but not the error that is logged
// and returned as the RPC status.
func TestStepFailureDetailStaysInUILog(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, "")
	cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: ambient, components: [{name: post, type: DeterministicStepComponent, tool_name: flaky, inputs: [{from: "SECRET", as: body, literal: true}]}], routers: [{from: post, to: end}], flow: {entry_point: post}}`), flowconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secretTools := flowtools.Merge([]*flowtools.Tool{{Name: "flaky", Privilege: flowtools.ReadOnlyGitLab,
		Run: func(_ context.Context, _ *flowtools.Env, a map[string]any) (string, error) {
			return "", errors.New("GitLab said: " + a["body"].(string))
		}}})
	e, _ := New(Options{Model: &scriptedModel{}, Tools: secretTools})
	_, err = (&Defined{Engine: e, Config: cfg}).Run(context.Background(), s)
	if err == nil || err.Error() != "component post failed: tool flaky failed" {
		t.Fatalf("%v", err)
	}
	log := uiLog(t, s)
	if end := log[len(log)-1]["content"].(string); end != "The flow stopped: component post failed: tool flaky failed: GitLab said: SECRET" {
		t.Fatalf("ui log end %q", end)
	}
}

// TestLargeInputFitsTheWindow: an input larger than the model's window is
// cut (with a note) so the first request fits.
func TestLargeInputFitsTheWindow(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, "")
	s.caller.Model.ContextWindow = 8192
	cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: ambient, prompts: [{prompt_id: p, prompt_template: {system: "Summarise.", user: "{{big}}"}}],
  components: [{name: sum, type: AgentComponent, prompt_id: p, inputs: [{from: "`+strings.Repeat("x", 100<<10)+`", as: big, literal: true}]}],
  routers: [{from: sum, to: end}], flow: {entry_point: sum}}`), flowconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &scriptedModel{results: []model.Result{{Text: "short"}}}
	e, _ := New(Options{Model: m, Tools: testTools})
	if _, err := (&Defined{Engine: e, Config: cfg}).Run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	user := m.reqs[0].Messages[1].Content
	if len(user) > 8192*3 || !strings.Contains(user, "[output truncated:") {
		t.Fatalf("first prompt %d bytes", len(user))
	}
}

// TestModelMistakesAreFedBack: with tool_choice auto, an unknown tool, an
// empty final answer and a one-off step answered in text each get a
// correction the model can act on; the flow still finishes.
func TestModelMistakesAreFedBack(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, routerFlow)
	m := &scriptedModel{results: []model.Result{
		{ToolCalls: []model.ToolCall{call("1", "rm_everything", `{}`)}},
		{ToolCalls: []model.ToolCall{call("2", FinalResponseTool, `{"final_response":""}`)}},
		{ToolCalls: []model.ToolCall{call("3", FinalResponseTool, `{"final_response":"bug"}`)}},
		{Text: "I would post it now."},
		{ToolCalls: []model.ToolCall{call("4", "flaky", `{"ok":true}`)}},
	}}
	e, _ := New(Options{Model: m, Tools: testTools})
	if _, err := (&Inline{Engine: e}).Run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	last := func(i int) string { msgs := m.reqs[i].Messages; return msgs[len(msgs)-1].Content }
	if m.reqs[0].ToolChoice != "auto" || !strings.Contains(last(1), `no tool named "rm_everything"`) ||
		!strings.Contains(last(2), "final_response must be a non-empty string") || last(4) != "You must call the tool flaky now." {
		t.Fatalf("corrections: %q / %q / %q", last(1), last(2), last(4))
	}
}

// TestRetryResumes: a flow that failed in its second component is retried
// by GitLab; the retry continues with that component, using the first
// one's persisted result instead of running it again.
func TestRetryResumes(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	gathered := 0
	tools := flowtools.Merge([]*flowtools.Tool{testTools["flaky"], testTools["shell"], {Name: "echo", Privilege: flowtools.ReadOnlyGitLab,
		Run: func(context.Context, *flowtools.Env, map[string]any) (string, error) {
			gathered++
			return "facts-from-run-1", nil
		}}})
	s := newSession(t, api, routerFlow)
	e, _ := New(Options{Model: blockingModel{}, Tools: tools, Budget: Budget{WallTime: 50 * time.Millisecond}})
	if _, err := (&Inline{Engine: e}).Run(context.Background(), s); err == nil {
		t.Fatal("first run did not fail")
	}
	if api.Workflow("5").Status != "failed" {
		t.Fatal(api.Workflow("5").Status)
	}
	s2 := newSession(t, api, routerFlow)
	m := &scriptedModel{results: []model.Result{{ToolCalls: []model.ToolCall{call("1", FinalResponseTool, `{"final_response":"feature"}`)}}}}
	e2, _ := New(Options{Model: m, Tools: tools})
	if out, err := (&Inline{Engine: e2}).Run(context.Background(), s2); err != nil || out != flow.Finished {
		t.Fatalf("%v %v", out, err)
	}
	if gathered != 1 || !strings.Contains(m.reqs[0].Messages[1].Content, "facts-from-run-1") {
		t.Fatalf("gather ran %d times; prompt %q", gathered, m.reqs[0].Messages[1].Content)
	}
	if api.Workflow("5").Status != "finished" || !slices.Contains(api.Requests(), `PATCH /api/v4/ai/duo_workflows/workflows/5`) {
		t.Fatal(api.Workflow("5").Status)
	}
	log := uiLog(t, s2)
	if log[0]["message_type"] != "tool" || !strings.Contains(log[1]["content"].(string), "wall time") {
		t.Fatalf("the retried run's UI log does not continue the first: %v", log)
	}
}

// TestLargeArgumentsStayOutOfCheckpoints: tool arguments in the UI log are
// bounded, so big file contents never make a checkpoint exceed the action
// limit.
func TestLargeArgumentsStayOutOfCheckpoints(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	s := newSession(t, api, routerFlow)
	big := `{"contents":"` + strings.Repeat("x", 600<<10) + `"}`
	m := &scriptedModel{results: []model.Result{
		{ToolCalls: []model.ToolCall{call("1", "echo", big), call("2", "echo", big), call("3", "echo", big)}},
		{ToolCalls: []model.ToolCall{call("4", FinalResponseTool, `{"final_response":"feature"}`)}},
	}}
	e, _ := New(Options{Model: m, Tools: testTools})
	if _, err := (&Inline{Engine: e}).Run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for _, a := range s.actions {
		if h := a.GetRunHTTPRequest(); h != nil && len(h.GetBody()) > 1<<20 {
			t.Fatalf("%s %s: %d bytes", h.GetMethod(), h.GetPath(), len(h.GetBody()))
		}
	}
}

// TestMCPToolsInFlows: a client MCP tool named in a component's toolset is
// offered when the workflow may run MCP tools, and runs as runMCPTool.
func TestMCPToolsInFlows(t *testing.T) {
	for _, allowed := range []bool{true, false} {
		api := gitlabtest.NewAPI("t")
		if allowed {
			api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunMCPTools}
		}
		s := newSession(t, api, "")
		s.start.McpTools = []*contract.McpTool{{Name: "jira_search", Description: "Search Jira", InputSchema: `{"type":"object","properties":{"q":{"type":"string"}}}`}}
		s.answer = func(a *contract.Action) *contract.ActionResponse {
			if m := a.GetRunMCPTool(); m != nil && m.GetName() == "jira_search" && m.GetArgs() == `{"q":"cart"}` {
				return plain("JIRA-7", "")
			}
			return plain("", "unexpected action")
		}
		cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: ambient, prompts: [{prompt_id: p, prompt_template: {user: go}}],
  components: [{name: a, type: AgentComponent, prompt_id: p, toolset: [jira_search]}], routers: [{from: a, to: end}], flow: {entry_point: a}}`), flowconfig.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := &scriptedModel{results: []model.Result{{ToolCalls: []model.ToolCall{call("1", "jira_search", `{"q":"cart"}`)}}, {Text: "done"}}}
		e, _ := New(Options{Model: m, Tools: testTools})
		if _, err := (&Defined{Engine: e, Config: cfg}).Run(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		offered := len(m.reqs[0].Tools) == 2
		got := m.reqs[1].Messages[len(m.reqs[1].Messages)-1].Content
		if offered != allowed || (allowed && got != "JIRA-7") || (!allowed && !strings.Contains(got, "no tool named")) {
			t.Errorf("allowed=%v: offered %v, result %q", allowed, offered, got)
		}
	}
}
