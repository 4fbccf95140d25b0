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

// asks is the agent setting that makes it ask before tool calls.
const asks = "require_tool_approval: true"

// chatFlow is a one-agent flow in the given environment whose agent may
// run shell (a write tool under run_commands) and echo (a read tool under
// read_only_gitlab); keys are more settings of the agent ("" for none).
func chatFlow(t *testing.T, env, keys string) *flowconfig.Config {
	t.Helper()
	if keys != "" {
		keys = ", " + keys
	}
	cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: `+env+`, prompts: [{prompt_id: p, prompt_template: {system: "Help.", user: "{{goal}}"}}],
  components: [{name: helper, type: AgentComponent, prompt_id: p, inputs: ["context:goal"], toolset: [shell, echo], ui_log_events: [on_agent_final_answer, on_tool_execution_success]`+keys+`}],
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

// TestInteractiveFlows: an agent with require_tool_approval pauses before
// a tool the workflow does not pre-approve (by privilege, by the client's
// list, by pre_approved_tools or a remembered approval) and resumes
// exactly at the paused call (approve runs it, reject feeds the refusal
// to the model, a rejection with a message also the message as
// feedback), in any environment as in GitLab's AgentComponent; without
// the setting nothing pauses. Chat and chat-partial flows end each turn
// with INPUT_REQUIRED and continue the agent's conversation with the next
// message.
func TestInteractiveFlows(t *testing.T) {
	paused := "TOOL_CALL_APPROVAL_REQUIRED"
	tests := []struct {
		name       string
		env        string
		keys       string // the agent's settings (asks for require_tool_approval)
		preApprove []string
		// bare: the workflow pre-approves no privilege at all.
		bare      bool
		waitFor   string // the tool a pause asks about ("shell" unless set)
		model     []model.Result
		turns     []turn
		shellRuns int
		check     func(t *testing.T, reqs []model.ChatRequest, log []map[string]any)
	}{
		{
			name: "pause then approve", env: "chat", keys: asks,
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
			name: "reject with a message", env: "chat-partial", keys: asks,
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
				// GitLab's MODIFY: the message is feedback for the model
				// after the refusals, and a user entry in the UI log.
				if lastContent(reqs[1]) != "too dangerous" || reqs[1].Messages[len(reqs[1].Messages)-1].Role != "user" {
					t.Errorf("feedback not given to the model: %+v", reqs[1].Messages)
				}
				if !hasEntry(log, "user", "too dangerous") || hasEntry(log, "user", "Rejected the tool call. too dangerous") {
					t.Errorf("feedback in the UI log: %v", log)
				}
			},
		},
		{
			name: "a new message instead of a decision rejects the call", env: "chat", keys: asks,
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
			name: "a reconnect without a decision keeps waiting", env: "chat", keys: asks,
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
			name: "queued stop stops", env: "chat", keys: asks,
			model: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}},
			turns: []turn{
				{goal: "run", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{events: [][2]string{{"stop", ""}}, decision: approve(false), out: flow.Stopped, status: "STOPPED", rails: "stopped"},
			},
		},
		{
			name: "remembered approval", env: "chat", keys: asks,
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
			name: "pre-approved privilege runs at once", env: "chat", keys: asks, preApprove: []string{flowtools.RunCommands},
			model:     []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}, {Text: "Done."}},
			turns:     []turn{{goal: "run", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"}},
			shellRuns: 1,
		},
		{
			name: "without require_tool_approval a chat flow never waits", env: "chat",
			model:     []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}, {Text: "Done."}},
			turns:     []turn{{goal: "run", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"}},
			shellRuns: 1,
		},
		{
			name: "without require_tool_approval an ambient flow never waits", env: "ambient", keys: "require_tool_approval: false",
			model:     []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`)}}, {Text: "Done."}},
			turns:     []turn{{goal: "run", out: flow.Finished, status: "FINISHED", rails: "finished"}},
			shellRuns: 1,
		},
		{
			name: "pre_approved_tools run at once", env: "chat", keys: asks + ", pre_approved_tools: [shell]",
			model:     []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{}`), call("c2", "shell", `{}`)}}, {Text: "Done."}},
			turns:     []turn{{goal: "run", out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"}},
			shellRuns: 2,
		},
		{
			name: "a read tool asks when its privilege is not pre-approved", env: "chat", keys: asks, bare: true, waitFor: "echo",
			model: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "echo", `{"q":1}`)}}, {Text: "Done."}},
			turns: []turn{
				{goal: "look", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: approve(false), out: flow.InputRequired, status: "INPUT_REQUIRED", rails: "input_required"},
			},
			check: func(t *testing.T, reqs []model.ChatRequest, _ []map[string]any) {
				if toolResultOf(reqs[1], "c1") != `{"q":1}` {
					t.Errorf("approved read call's result: %+v", reqs[1].Messages)
				}
			},
		},
		{
			name: "an ambient flow with require_tool_approval waits; a plain rejection", env: "ambient", keys: asks,
			model: []model.Result{
				{ToolCalls: []model.ToolCall{call("c1", "shell", `{"cmd":"deploy"}`)}},
				{ToolCalls: []model.ToolCall{call("f", FinalResponseTool, `{"final_response":"Not deployed."}`)}},
			},
			turns: []turn{
				{goal: "deploy", out: flow.ToolApprovalRequired, status: paused, rails: "tool_call_approval_required"},
				{decision: reject(""), out: flow.Finished, status: "FINISHED", rails: "finished"},
			},
			check: func(t *testing.T, reqs []model.ChatRequest, log []map[string]any) {
				if !strings.Contains(toolResultOf(reqs[1], "c1"), "rejected") || reqs[1].Messages[len(reqs[1].Messages)-1].Role != "tool" {
					t.Errorf("refusal not fed back (and nothing after it): %+v", reqs[1].Messages)
				}
				for _, e := range log {
					if e["message_type"] == "user" {
						t.Errorf("a plain rejection wrote a user entry: %v", e)
					}
				}
				if !hasEntry(log, "agent", "Not deployed.") {
					t.Errorf("final answer missing: %v", log)
				}
			},
		},
		{
			name: "approval naming another tool is refused", env: "chat", keys: asks,
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
			if tc.bare {
				api.Workflow("5").PreApproved = nil
			}
			waitFor := tc.waitFor
			if waitFor == "" {
				waitFor = "shell"
			}
			var shellRuns atomic.Int32
			tools := flowtools.Merge([]*flowtools.Tool{testTools["echo"], {Name: "shell", Privilege: flowtools.RunCommands, Write: true, Params: flowtools.Schema(nil),
				Run: func(context.Context, *flowtools.Env, map[string]any) (string, error) {
					shellRuns.Add(1)
					return "ran", nil
				}}})
			m := &scriptedModel{results: tc.model}
			e, _ := New(Options{Model: m, Tools: tools})
			d := &Defined{Engine: e, Config: chatFlow(t, tc.env, tc.keys)}
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
					if e["message_type"] != "request" || e["tool_info"].(map[string]any)["name"] != waitFor {
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
	if out, err := (&Defined{Engine: e, Config: chatFlow(t, "chat", asks)}).Run(context.Background(), s); err != nil || out != flow.ToolApprovalRequired {
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

// TestOtherStepsNeverAsk: deterministic and one-off steps have no
// require_tool_approval in GitLab's schema (the key is ignored and
// listed), so even in a chat flow their write tool runs at once.
func TestOtherStepsNeverAsk(t *testing.T) {
	for name, component := range map[string]string{
		"deterministic": `{name: step, type: DeterministicStepComponent, tool_name: shell, require_tool_approval: true}`,
		"one-off":       `{name: step, type: OneOffComponent, prompt_id: p, inputs: ["context:goal"], tool_name: shell, require_tool_approval: true}`,
	} {
		t.Run(name, func(t *testing.T) {
			api := gitlabtest.NewAPI("t")
			api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
			cfg, err := flowconfig.Parse([]byte(`{version: v1, environment: chat, prompts: [{prompt_id: p, prompt_template: {user: "{{goal}}"}}],
  components: [`+component+`], routers: [{from: step, to: end}], flow: {entry_point: step}}`), flowconfig.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(cfg.Ignored, ",") != "components[0].require_tool_approval" {
				t.Fatalf("ignored %v", cfg.Ignored)
			}
			var runs atomic.Int32
			tools := flowtools.Merge([]*flowtools.Tool{{Name: "shell", Privilege: flowtools.RunCommands, Write: true, Params: flowtools.Schema(nil),
				Run: func(context.Context, *flowtools.Env, map[string]any) (string, error) {
					runs.Add(1)
					return "ran", nil
				}}})
			m := &scriptedModel{results: []model.Result{{ToolCalls: []model.ToolCall{call("c1", "shell", `{"cmd":"make"}`)}}}}
			e, _ := New(Options{Model: m, Tools: tools})
			s := newSession(t, api, "")
			s.start.Goal = "build"
			if out, err := (&Defined{Engine: e, Config: cfg}).Run(context.Background(), s); err != nil || out != flow.InputRequired || runs.Load() != 1 {
				t.Fatalf("%v %v, shell ran %d times", out, err, runs.Load())
			}
		})
	}
}
