package flowengine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// chatFlow is a one-agent flow in the given environment whose agent may
// run shell (a write tool under run_commands) and echo (a read tool).
func chatFlow(t *testing.T, env string) *flowconfig.Config {
	t.Helper()
	cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: `+env+`, prompts: [{prompt_id: p, prompt_template: {system: "Help.", user: "{{goal}}"}}],
  components: [{name: helper, type: AgentComponent, prompt_id: p, inputs: ["context:goal"], toolset: [shell, echo], ui_log_events: [on_agent_final_answer, on_tool_execution_success]}],
  routers: [{from: helper, to: end}], flow: {entry_point: helper}}`), flowconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// turn is one session of a workflow: the startRequest's goal and
// decision, and what the session must end with.
type turn struct {
	events   [][2]string // human events queued before the session: type, message
	goal     string
	decision *contract.Approval
	out      flow.Outcome
	status   string // the last newCheckpoint's status
	rails    string // Rails' workflow status afterwards
	errText  string // a failed session's error
}

func approve(remember bool) *contract.Approval {
	return &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{RememberApproval: &remember}}}
}

func reject(msg string) *contract.Approval {
	return &contract.Approval{UserDecision: &contract.Approval_Rejection{Rejection: &contract.Approval_Rejected{Message: &msg}}}
}

func lastContent(r model.ChatRequest) string { return r.Messages[len(r.Messages)-1].Content }

// TestInteractiveFlows: chat and chat-partial flows pause for approval of
// write tools outside the pre-approved set and resume exactly at the
// paused call (approve runs it, reject feeds the refusal to the model),
// end each turn with INPUT_REQUIRED and continue the agent's conversation
// with the next message; ambient flows never wait.
func TestInteractiveFlows(t *testing.T) {
	paused := "TOOL_CALL_APPROVAL_REQUIRED"
	tests := []struct {
		name       string
		env        string
		preApprove []string
		model      []model.Result
		turns      []turn
		shellRuns  int
		check      func(t *testing.T, reqs []model.ChatRequest, log []map[string]any)
	}{
		{
			name: "pause then approve", env: "chat",
			model: []model.Result{
				{Text: "Listing.", ToolCalls: []model.ToolCall{call("c1", "echo", `{"a":1}`), call("c2", "shell", `{"cmd":"ls"}`), call("c3", "echo", `{"b":2}`)}},
				{Text: "The directory holds two files."},
			},
			turns: []turn{
				{goal: "what is here?", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: approve(false), out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			shellRuns: 1,
			check: func(t *testing.T, reqs []model.ChatRequest, log []map[string]any) {
				if toolResultOf(reqs[1], "c1") != `{"a":1}` || toolResultOf(reqs[1], "c2") != "ran" || toolResultOf(reqs[1], "c3") != `{"b":2}` {
					t.Errorf("resumed history lacks the calls' results: %+v", reqs[1].Messages)
				}
				if last := log[len(log)-1]; last["message_type"] != "agent" || last["content"] != "The directory holds two files." {
					t.Errorf("last entry %v", last)
				}
			},
		},
		{
			name: "reject with a message", env: "chat-partial",
			model: []model.Result{
				{ToolCalls: []model.ToolCall{call("c1", "shell", `{"cmd":"rm -rf /"}`), call("c2", "echo", `{}`)}},
				{Text: "Understood, I will not delete anything."},
			},
			turns: []turn{
				{goal: "clean up", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: reject("too dangerous"), out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			check: func(t *testing.T, reqs []model.ChatRequest, log []map[string]any) {
				if r := toolResultOf(reqs[1], "c1"); !strings.Contains(r, "rejected") || !strings.Contains(r, "too dangerous") {
					t.Errorf("rejection not fed back: %q", r)
				}
				if r := toolResultOf(reqs[1], "c2"); !strings.HasPrefix(r, "Not run") {
					t.Errorf("the call after the rejected one: %q", r)
				}
				if !hasEntry(log, "user", "Rejected the tool call. too dangerous") {
					t.Errorf("rejection not in the UI log: %v", log)
				}
			},
		},
		{
			name: "a new message instead of a decision rejects the call", env: "chat",
			model: []model.Result{
				{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}},
				{Text: "Fine, no commands."},
			},
			turns: []turn{
				{goal: "build it", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{goal: "do not run anything", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			check: func(t *testing.T, reqs []model.ChatRequest, _ []map[string]any) {
				if !strings.Contains(toolResultOf(reqs[1], "c1"), "rejected") || lastContent(reqs[1]) != "do not run anything" {
					t.Errorf("second request %+v", reqs[1].Messages)
				}
			},
		},
		{
			name: "next message continues the conversation", env: "chat",
			model: []model.Result{
				{Text: "Hello! Ask me anything."},
				{ToolCalls: []model.ToolCall{call("f", FinalResponseTool, `{"final_response":"It is 42."}`)}},
				{Text: "You asked two questions."},
			},
			turns: []turn{
				{goal: "hi", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
				{goal: "what is the answer?", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
				{goal: "how many questions?", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			check: func(t *testing.T, reqs []model.ChatRequest, log []map[string]any) {
				r := reqs[2]
				var roles []string
				for _, m := range r.Messages {
					roles = append(roles, m.Role)
				}
				if strings.Join(roles, ",") != "system,user,assistant,user,assistant,tool,user" || r.Messages[1].Content != "hi" || lastContent(r) != "how many questions?" {
					t.Errorf("third request history %v: %+v", roles, r.Messages)
				}
				var users []string
				for _, e := range log {
					if e["message_type"] == "user" {
						users = append(users, e["content"].(string))
					}
				}
				if strings.Join(users, "|") != "hi|what is the answer?|how many questions?" {
					t.Errorf("user entries %v", users)
				}
			},
		},
		{
			name: "a reconnect without a decision keeps waiting", env: "chat",
			model: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}, {Text: "Done."}},
			turns: []turn{
				{goal: "run", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: approve(false), out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			shellRuns: 1,
		},
		{
			name: "queued message is the next turn", env: "chat",
			model: []model.Result{{Text: "Hi."}, {Text: "Answered."}},
			turns: []turn{
				{goal: "hi", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
				{events: [][2]string{{"message", "typed in the web UI"}}, out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			check: func(t *testing.T, reqs []model.ChatRequest, _ []map[string]any) {
				if lastContent(reqs[1]) != "typed in the web UI" {
					t.Errorf("second request ends with %q", lastContent(reqs[1]))
				}
			},
		},
		{
			name: "queued stop stops", env: "chat",
			model: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}},
			turns: []turn{
				{goal: "run", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{events: [][2]string{{"stop", ""}}, decision: approve(false), out: flow.Stopped, status: "STOPPED", rails: "stopped"},
			},
		},
		{
			name: "remembered approval", env: "chat",
			model: []model.Result{
				{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}},
				{ToolCalls: []model.ToolCall{call("c2", "shell", `{}`)}},
				{Text: "Ran it twice."},
			},
			turns: []turn{
				{goal: "run twice", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: approve(true), out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			shellRuns: 2,
		},
		{
			name: "pre-approved privilege runs at once", env: "chat", preApprove: []string{flowtools.RunCommands},
			model:     []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}, {Text: "Done."}},
			turns:     []turn{{goal: "run", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"}},
			shellRuns: 1,
		},
		{
			name: "ambient never waits", env: "ambient",
			model:     []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}, {Text: "Done."}},
			turns:     []turn{{goal: "run", out: flow.Finished, status: "FINISHED", rails: "finished"}},
			shellRuns: 1,
		},
		{
			name: "approval naming another tool is refused", env: "chat",
			model: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}},
			turns: []turn{
				{goal: "run", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{ToolName: ptr2("echo")}}},
					errText: `the approval names tool "echo", but "shell" is waiting for approval`, rails: "tool_call_approval_required"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := gitlabtest.NewAPI("t")
			api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
			api.Workflow("5").PreApproved = append([]string{flowtools.ReadOnlyGitLab}, tc.preApprove...)
			var shellRuns atomic.Int32
			tools := flowtools.Merge([]*flowtools.Tool{testTools["echo"], {Name: "shell", Privilege: flowtools.RunCommands, Write: true, Params: flowtools.Schema(nil),
				Run: func(context.Context, *flowtools.Env, map[string]any) (string, error) {
					shellRuns.Add(1)
					return "ran", nil
				}}})
			m := &scriptedModel{results: tc.model}
			e, _ := New(Options{Model: m, Tools: tools})
			d := &Defined{Engine: e, Config: chatFlow(t, tc.env)}
			var s *fakeSession
			for i, tr := range tc.turns {
				for _, ev := range tr.events {
					api.QueueEvent("5", ev[0], ev[1])
				}
				s = newSession(t, api, "")
				s.start.Goal, s.start.Approval = tr.goal, tr.decision
				out, err := d.Run(context.Background(), s)
				if tr.errText != "" {
					var ce *flow.ClientError
					if !errors.As(err, &ce) || ce.Message != tr.errText {
						t.Fatalf("turn %d: err %v, want %s", i, err, tr.errText)
					}
				} else if err != nil || out != tr.out || s.last.GetStatus() != tr.status {
					t.Fatalf("turn %d: %v %v, status %s; want %v %s", i, out, err, s.last.GetStatus(), tr.out, tr.status)
				}
				if got := api.Workflow("5").Status; got != tr.rails {
					t.Fatalf("turn %d: Rails status %s, want %s", i, got, tr.rails)
				}
				if tr.status == paused {
					log := uiLog(t, s)
					e := log[len(log)-1]
					if e["message_type"] != "request" || e["tool_info"].(map[string]any)["name"] != "shell" {
						t.Fatalf("turn %d: approval request entry %v", i, e)
					}
				}
			}
			if int(shellRuns.Load()) != tc.shellRuns {
				t.Fatalf("shell ran %d times, want %d", shellRuns.Load(), tc.shellRuns)
			}
			if len(m.results) > 1 {
				t.Fatalf("%d scripted answers left unused", len(m.results))
			}
			if tc.check != nil {
				tc.check(t, m.reqs, uiLog(t, s))
			}
		})
	}
}

func ptr2(s string) *string { return &s }

func toolResultOf(r model.ChatRequest, id string) string {
	for _, m := range r.Messages {
		if m.Role == "tool" && m.ToolCallID == id {
			return m.Content
		}
	}
	return ""
}

func hasEntry(log []map[string]any, typ, content string) bool {
	for _, e := range log {
		if e["message_type"] == typ && e["content"] == content {
			return true
		}
	}
	return false
}

// TestPendingCallSurvivesInCheckpoint: the paused call and the step's
// history are in the persisted checkpoint (what a resume reads), bounded
// to the one waiting call.
func TestPendingCallSurvivesInCheckpoint(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
	s := newSession(t, api, "")
	m := &scriptedModel{results: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{"cmd":"make"}`)}}}}
	e, _ := New(Options{Model: m, Tools: testTools})
	if out, err := (&Defined{Engine: e, Config: chatFlow(t, "chat")}).Run(context.Background(), s); err != nil || out != flow.ToolApprovalRequired {
		t.Fatalf("%v %v", out, err)
	}
	cps := api.Workflow("5").Checkpoints
	cv := cps[len(cps)-1]["channel_values"].(map[string]any)
	if cv["status"] != "TOOL_CALL_APPROVAL_REQUIRED" {
		t.Fatalf("status %v", cv["status"])
	}
	b, _ := json.Marshal(cv["conversation"])
	var st flowState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state %s: %v", b, err)
	}
	if st.Waiting != waitApproval || len(st.Pending) != 1 || st.Pending[0].ID != "c1" || st.Step == nil || st.Step.Component != "helper" || len(st.Step.Messages) != 3 {
		t.Fatalf("persisted state %s", b)
	}
}

// TestDeterministicStepWaitsForApproval: a chat flow's deterministic step
// with a write tool waits for approval; a rejection fails the step.
func TestDeterministicStepWaitsForApproval(t *testing.T) {
	for _, approved := range []bool{true, false} {
		api := gitlabtest.NewAPI("t")
		api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
		cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: chat, components: [{name: run, type: DeterministicStepComponent, tool_name: shell}], routers: [{from: run, to: end}], flow: {entry_point: run}}`), flowconfig.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := New(Options{Model: &scriptedModel{}, Tools: testTools})
		d := &Defined{Engine: e, Config: cfg}
		if out, err := d.Run(context.Background(), newSession(t, api, "")); err != nil || out != flow.ToolApprovalRequired {
			t.Fatalf("%v %v", out, err)
		}
		s := newSession(t, api, "")
		s.start.Approval = reject("")
		if approved {
			s.start.Approval = approve(false)
		}
		out, err := d.Run(context.Background(), s)
		if approved && (err != nil || out != flow.InputRequired) {
			t.Fatalf("approved: %v %v", out, err)
		}
		if !approved && (err == nil || err.Error() != "component run failed: the user rejected the tool call shell" || api.Workflow("5").Status != "failed") {
			t.Fatalf("rejected: %v %v", out, err)
		}
	}
}

// TestOneOffStepWaitsForApproval: a chat flow's one-off step pauses at its
// forced call; a rejection goes back to the model, whose corrected call
// waits again and runs once approved.
func TestOneOffStepWaitsForApproval(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
	cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: chat, prompts: [{prompt_id: p, prompt_template: {user: "{{goal}}"}}],
  components: [{name: once, type: OneOffComponent, prompt_id: p, inputs: ["context:goal"], tool_name: shell, max_correction_attempts: 1}],
  routers: [{from: once, to: end}], flow: {entry_point: once}}`), flowconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	tools := flowtools.Merge([]*flowtools.Tool{{Name: "shell", Privilege: flowtools.RunCommands, Write: true, Params: flowtools.Schema(nil),
		Run: func(_ context.Context, _ *flowtools.Env, a map[string]any) (string, error) {
			runs = append(runs, a["cmd"].(string))
			return "ran", nil
		}}})
	m := &scriptedModel{results: []model.Result{
		{ToolCalls: []model.ToolCall{call("c1", "shell", `{"cmd":"make clean"}`)}},
		{ToolCalls: []model.ToolCall{call("c2", "shell", `{"cmd":"make"}`)}},
	}}
	e, _ := New(Options{Model: m, Tools: tools})
	d := &Defined{Engine: e, Config: cfg}
	for i, tr := range []turn{
		{goal: "build", out: flow.ToolApprovalRequired},
		{decision: reject("do not clean"), out: flow.ToolApprovalRequired},
		{decision: approve(false), out: flow.InputRequired},
	} {
		s := newSession(t, api, "")
		s.start.Goal, s.start.Approval = tr.goal, tr.decision
		if out, err := d.Run(context.Background(), s); err != nil || out != tr.out {
			t.Fatalf("turn %d: %v %v, want %v", i, out, err, tr.out)
		}
	}
	if len(runs) != 1 || runs[0] != "make" || len(m.reqs) != 2 || !strings.Contains(toolResultOf(m.reqs[1], "c1"), "do not clean") {
		t.Fatalf("runs %v, %d model calls", runs, len(m.reqs))
	}
}
