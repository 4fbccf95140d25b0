package agentplatform

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/chat"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// scriptedModel answers each call with the next step of a script; each
// step sees the request (to assert on history and tools).
type scriptedModel struct {
	mu    sync.Mutex
	steps []func(t *testing.T, r model.ChatRequest) model.Result
	calls []model.ChatRequest
	t     *testing.T
}

func (m *scriptedModel) ChatStream(_ context.Context, r model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	m.mu.Lock()
	if len(m.calls) >= len(m.steps) {
		m.mu.Unlock()
		m.t.Errorf("model called %d times, script has %d steps", len(m.calls)+1, len(m.steps))
		return model.Result{Text: "(script ended)"}, nil
	}
	step := m.steps[len(m.calls)]
	m.calls = append(m.calls, r)
	m.mu.Unlock()
	res := step(m.t, r)
	for _, w := range strings.SplitAfter(res.Text, " ") {
		if w != "" {
			if err := onDelta(w); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

func call(id, name, args string) model.ToolCall {
	return model.ToolCall{ID: id, Type: "function", Function: model.ToolCallFunction{Name: name, Arguments: args}}
}

func toolResult(r model.ChatRequest, id string) string {
	for _, m := range r.Messages {
		if m.Role == "tool" && m.ToolCallID == id {
			return m.Content
		}
	}
	return ""
}

// chatHarness is the service with Agentic Chat, a demo GitLab API and a
// Workhorse-like client.
type chatHarness struct {
	*harness
	api   *gitlabtest.API
	model *scriptedModel
}

func newChatHarness(t *testing.T) *chatHarness {
	m := &scriptedModel{t: t}
	agent, err := chat.New(chat.Options{Model: m})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": agent}})
	return &chatHarness{harness: h, api: gitlabtest.NewAPI("user-oauth-token"), model: m}
}

func (h *chatHarness) session(t *testing.T, md metadata.MD, start *contract.StartWorkflowRequest) (workhorse.Result, []*contract.NewCheckpoint, error) {
	var cps []*contract.NewCheckpoint
	res, err := workhorse.Run(h.ctx(md), h.client, workhorse.Session{
		Metadata: md, Start: start, GitLab: h.api, OAuthToken: "user-oauth-token",
		OnCheckpoint: func(c *contract.NewCheckpoint) error { cps = append(cps, c); return nil },
	})
	return res, cps, err
}

type uiLog struct {
	ChannelValues struct {
		UIChatLog []map[string]any `json:"ui_chat_log"`
	} `json:"channel_values"`
}

func logOf(t *testing.T, c *contract.NewCheckpoint) []map[string]any {
	var l uiLog
	if err := json.Unmarshal([]byte(c.Checkpoint), &l); err != nil {
		t.Fatalf("checkpoint JSON: %v", err)
	}
	return l.ChannelValues.UIChatLog
}

// TestAgenticChatSession is a full Agentic Chat conversation: two read
// tools, a write tool approved, a follow-up message, a write tool
// rejected, with checkpoints persisted in Rails' shape.
func TestAgenticChatSession(t *testing.T) {
	h := newChatHarness(t)
	h.model.steps = []func(*testing.T, model.ChatRequest) model.Result{
		func(t *testing.T, r model.ChatRequest) model.Result {
			if r.Model != "sandbox-model" || r.ToolChoice != "auto" || r.Messages[0].Role != "system" || r.Messages[len(r.Messages)-1].Content != "What is wrong in issue 1?" {
				t.Errorf("first request %+v", r.Messages)
			}
			names := map[string]bool{}
			for _, tl := range r.Tools {
				names[tl.Function.Name] = true
			}
			if !names["get_issue"] || !names["create_work_item_note"] || names["read_file"] || names["run_command"] {
				t.Errorf("browser chat tools: %v", names)
			}
			return model.Result{Text: "Let me look.", ToolCalls: []model.ToolCall{
				call("c1", "get_issue", `{"issue_iid":1}`), call("c2", "get_repository_file", `{"file_path":"src/cart.js"}`)}}
		},
		func(t *testing.T, r model.ChatRequest) model.Result {
			if !strings.Contains(toolResult(r, "c1"), "Cart total ignores quantity") || !strings.Contains(toolResult(r, "c2"), "i.price") {
				t.Errorf("tool results missing: %q / %q", toolResult(r, "c1"), toolResult(r, "c2"))
			}
			return model.Result{ToolCalls: []model.ToolCall{call("c3", "create_work_item_note", `{"work_item_iid":1,"body":"Root cause: quantity ignored."}`)}}
		},
		func(t *testing.T, r model.ChatRequest) model.Result {
			if !strings.Contains(toolResult(r, "c3"), "Root cause") {
				t.Errorf("approved note result: %q", toolResult(r, "c3"))
			}
			return model.Result{Text: "The total ignores `quantity`; I left a note on the issue."}
		},
		func(t *testing.T, r model.ChatRequest) model.Result {
			if r.Messages[len(r.Messages)-1].Content != "Please also close it." || toolResult(r, "c1") == "" {
				t.Errorf("follow-up lost the history")
			}
			return model.Result{ToolCalls: []model.ToolCall{call("c4", "update_work_item", `{"work_item_iid":1,"state_event":"close"}`)}}
		},
		func(t *testing.T, r model.ChatRequest) model.Result {
			if !strings.Contains(toolResult(r, "c4"), "rejected") || !strings.Contains(toolResult(r, "c4"), "not yet") {
				t.Errorf("rejection not passed on: %q", toolResult(r, "c4"))
			}
			return model.Result{Text: "OK, I left it open."}
		},
	}
	md := h.railsMD("duo_chat")
	start := func(goal string) *contract.StartWorkflowRequest {
		return &contract.StartWorkflowRequest{WorkflowID: "42", WorkflowDefinition: "chat", Goal: goal, ClientCapabilities: []string{"incremental_streaming"}}
	}

	// 1: two read tools, then a write tool waits for approval.
	res, cps, err := h.session(t, md, start("What is wrong in issue 1?"))
	if err != nil {
		t.Fatal(err)
	}
	last := res.Last
	if last.Status != "TOOL_CALL_APPROVAL_REQUIRED" {
		t.Fatalf("status %s", last.Status)
	}
	l := logOf(t, last)
	if e := l[len(l)-1]; e["message_type"] != "request" || e["tool_info"].(map[string]any)["name"] != "create_work_item_note" {
		t.Fatalf("approval request entry %v", e)
	}
	if len(h.api.Notes("issues/1")) != 1 {
		t.Fatal("the note was written before approval")
	}
	if wf := h.api.Workflow("42"); wf.Status != "tool_call_approval_required" {
		t.Fatalf("Rails status %s", wf.Status)
	}
	if len(cps) < 3 || res.Actions["runHTTPRequest"] < 5 {
		t.Fatalf("too few updates: %d checkpoints, %v", len(cps), res.Actions)
	}

	// 2: approve; the note is posted and the answer streams.
	approve := start("")
	approve.Approval = &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{}}}
	res, _, err = h.session(t, md, approve)
	if err != nil {
		t.Fatal(err)
	}
	if res.Last.Status != "INPUT_REQUIRED" {
		t.Fatalf("status %s", res.Last.Status)
	}
	notes := h.api.Notes("issues/1")
	if len(notes) != 2 || notes[1]["body"] != "Root cause: quantity ignored." {
		t.Fatalf("notes %v", notes)
	}
	l = logOf(t, res.Last)
	if e := l[len(l)-1]; e["message_type"] != "agent" || !strings.Contains(e["content"].(string), "quantity") {
		t.Fatalf("answer entry %v", e)
	}

	// 3: a follow-up message continues the same workflow; 4: rejection.
	if res, _, err = h.session(t, md, start("Please also close it.")); err != nil || res.Last.Status != "TOOL_CALL_APPROVAL_REQUIRED" {
		t.Fatalf("follow-up: %v %v", err, res.Last)
	}
	msg := "not yet"
	reject := start("")
	reject.Approval = &contract.Approval{UserDecision: &contract.Approval_Rejection{Rejection: &contract.Approval_Rejected{Message: &msg}}}
	if res, _, err = h.session(t, md, reject); err != nil || res.Last.Status != "INPUT_REQUIRED" {
		t.Fatalf("rejection: %v %v", err, res.Last)
	}

	// Rails' view: checkpoints in time order (the demo API refuses
	// otherwise), goal from the first message, every log entry keyed.
	wf := h.api.Workflow("42")
	if len(wf.Checkpoints) < 4 {
		t.Fatalf("%d checkpoints persisted", len(wf.Checkpoints))
	}
	final := wf.Checkpoints[len(wf.Checkpoints)-1]["channel_values"].(map[string]any)
	if final["__start__"].(map[string]any)["goal"] != "What is wrong in issue 1?" || final["status"] != "INPUT_REQUIRED" {
		t.Fatalf("final checkpoint %v", final["__start__"])
	}
	for _, e := range final["ui_chat_log"].([]any) {
		if e.(map[string]any)["message_id"] == "" {
			t.Fatalf("entry without message_id: %v", e)
		}
	}
	if len(h.model.calls) != 5 {
		t.Fatalf("model calls %d", len(h.model.calls))
	}
}

// blockingModel streams one delta and then waits until the call is
// cancelled.
type blockingModel struct{ cancelled chan struct{} }

func (m *blockingModel) ChatStream(ctx context.Context, _ model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	_ = onDelta("Thinking")
	<-ctx.Done()
	close(m.cancelled)
	return model.Result{}, ctx.Err()
}

// TestChatStopMidStream: stopWorkflow while the model streams cancels the
// model call, sends STOPPED and ends the RPC with OK; heartbeats before it
// change nothing.
func TestChatStopMidStream(t *testing.T) {
	m := &blockingModel{cancelled: make(chan struct{})}
	agent, err := chat.New(chat.Options{Model: m, StreamInterval: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": agent}})
	api := gitlabtest.NewAPI("user-oauth-token")
	md := h.railsMD("duo_chat")
	st, err := h.client.ExecuteWorkflow(h.ctx(md))
	must(t, err)
	must(t, st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StartRequest{StartRequest: &contract.StartWorkflowRequest{WorkflowID: "5", WorkflowDefinition: "chat", Goal: "hi"}}}))
	sawDelta := false
	for !sawDelta {
		a, err := st.Recv()
		must(t, err)
		if hr := a.GetRunHTTPRequest(); hr != nil {
			resp, _ := workhorseAnswer(api, a)
			must(t, st.Send(resp))
			continue
		}
		if cp := a.GetNewCheckpoint(); cp != nil && strings.Contains(cp.Checkpoint, "Thinking") {
			sawDelta = true
		}
	}
	must(t, st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_Heartbeat{Heartbeat: &contract.HeartbeatRequest{Timestamp: 1}}}))
	must(t, st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StopWorkflow{StopWorkflow: &contract.StopWorkflowRequest{Reason: "WORKHORSE_WEBSOCKET_CLOSE_1001"}}}))
	var last *contract.NewCheckpoint
	for {
		a, err := st.Recv()
		if err != nil {
			if err != io.EOF {
				t.Fatalf("end: %v", err)
			}
			break
		}
		if cp := a.GetNewCheckpoint(); cp != nil {
			last = cp
		}
		if a.GetRunHTTPRequest() != nil {
			resp, _ := workhorseAnswer(api, a)
			must(t, st.Send(resp))
		}
	}
	if last == nil || last.Status != "STOPPED" {
		t.Fatalf("last checkpoint %v", last)
	}
	<-m.cancelled
	// GitLab learns of the stop by the workflow's `stop` status event.
	if reqs := api.Requests(); reqs[len(reqs)-1] != "PATCH /api/v4/ai/duo_workflows/workflows/5" {
		t.Fatalf("last GitLab request %q", reqs[len(reqs)-1])
	}
	if s := api.Workflow("5").Status; s != "stopped" {
		t.Fatalf("workflow status %q, want stopped", s)
	}
}

// workhorseAnswer answers one runHTTPRequest from the demo API.
func workhorseAnswer(api http.Handler, a *contract.Action) (*contract.ClientEvent, error) {
	r := a.GetRunHTTPRequest()
	req := httptest.NewRequest(r.GetMethod(), r.GetPath(), strings.NewReader(r.GetBody()))
	req.Header.Set("Authorization", "Bearer user-oauth-token")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	return &contract.ClientEvent{Response: &contract.ClientEvent_ActionResponse{ActionResponse: &contract.ActionResponse{
		RequestID: a.RequestID, ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{StatusCode: int32(rec.Code), Body: rec.Body.String()}},
	}}}, nil
}

// TestRunChatDriver: the CLI's driver prints tool calls, the approval step
// and the streamed answer, approving once.
func TestRunChatDriver(t *testing.T) {
	h := newChatHarness(t)
	h.model.steps = []func(*testing.T, model.ChatRequest) model.Result{
		func(*testing.T, model.ChatRequest) model.Result {
			return model.Result{ToolCalls: []model.ToolCall{call("a", "get_issue", `{"issue_iid":1}`)}}
		},
		func(*testing.T, model.ChatRequest) model.Result {
			return model.Result{ToolCalls: []model.ToolCall{call("b", "create_work_item_note", `{"work_item_iid":1,"body":"hi"}`)}}
		},
		func(*testing.T, model.ChatRequest) model.Result { return model.Result{Text: "All done here."} },
	}
	var out strings.Builder
	md := h.railsMD("duo_chat")
	status, err := workhorse.RunChat(h.ctx(md), h.client, workhorse.Session{Metadata: md, GitLab: h.api, OAuthToken: "user-oauth-token"}, "8", "check issue 1", false, &out)
	if err != nil || status != "INPUT_REQUIRED" {
		t.Fatalf("%s %v\n%s", status, err, out.String())
	}
	for _, want := range []string{"You: check issue 1", "[tool] get_issue issue_iid=1 → success", "[approval needed] create_work_item_note", "approving", "[tool] create_work_item_note", "Duo: All done here.", "[INPUT_REQUIRED]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestApprovalRememberedAndMismatch: an approval naming another tool is
// refused; "remember approval" lets later calls of the tool run without
// asking.
func TestApprovalRememberedAndMismatch(t *testing.T) {
	h := newChatHarness(t)
	note := func(id string) func(*testing.T, model.ChatRequest) model.Result {
		return func(*testing.T, model.ChatRequest) model.Result {
			return model.Result{ToolCalls: []model.ToolCall{call(id, "create_work_item_note", `{"work_item_iid":1,"body":"n"}`)}}
		}
	}
	h.model.steps = []func(*testing.T, model.ChatRequest) model.Result{
		note("a"),
		note("b"), // after the remembered approval: runs at once
		func(*testing.T, model.ChatRequest) model.Result { return model.Result{Text: "done"} },
	}
	md := h.railsMD("duo_chat")
	start := func() *contract.StartWorkflowRequest {
		return &contract.StartWorkflowRequest{WorkflowID: "11", WorkflowDefinition: "chat"}
	}
	first := start()
	first.Goal = "comment twice"
	if res, _, err := h.session(t, md, first); err != nil || res.Last.Status != "TOOL_CALL_APPROVAL_REQUIRED" {
		t.Fatalf("%v %v", res.Last, err)
	}
	wrong := start()
	other := "create_merge_request"
	wrong.Approval = &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{ToolName: &other}}}
	if _, _, err := h.session(t, md, wrong); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("mismatched approval: %v", err)
	}
	if wf := h.api.Workflow("11"); wf.Status != "tool_call_approval_required" {
		t.Fatalf("a refused approval changed the workflow to %s", wf.Status)
	}
	remember, name := true, "create_work_item_note"
	ok := start()
	ok.Approval = &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{ToolName: &name, RememberApproval: &remember}}}
	if res, _, err := h.session(t, md, ok); err != nil || res.Last.Status != "INPUT_REQUIRED" {
		t.Fatalf("%v %v", res.Last, err)
	}
	if n := len(h.api.Notes("issues/1")); n != 3 {
		t.Fatalf("%d notes, want the first and the remembered second", n)
	}
}
