package agentplatform

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowengine"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/foundationalflows"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"google.golang.org/protobuf/types/known/structpb"
)

// inlineFlowConfig is a custom flow as GitLab's AI Catalog sends it
// inline: one agent that may run commands, in environment env, with more
// agent settings keys (JSON members, "" for none).
func inlineFlowConfig(t *testing.T, env, keys string) *structpb.Struct {
	t.Helper()
	if keys != "" {
		keys = ", " + keys
	}
	doc := map[string]any{}
	if err := json.Unmarshal([]byte(`{"version": "v1", "environment": "`+env+`",
 "prompts": [{"prompt_id": "builder", "prompt_template": {"system": "You build the project.", "user": "{{goal}}"}}],
 "components": [{"name": "builder", "type": "AgentComponent", "prompt_id": "builder", "inputs": ["context:goal"],
   "toolset": ["run_command"], "ui_log_events": ["on_agent_final_answer", "on_tool_execution_success"]`+keys+`}],
 "routers": [{"from": "builder", "to": "end"}], "flow": {"entry_point": "builder"}}`), &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := structpb.NewStruct(doc)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// inlineFlow runs sessions of workflow 77 with an inline flowConfig
// through the gRPC service and a Workhorse-like client whose executor
// answers run_command (recorded in commands).
type inlineFlow struct {
	t        *testing.T
	h        *harness
	api      *gitlabtest.API
	cfg      *structpb.Struct
	commands []string
}

func newInlineFlow(t *testing.T, m *scriptedModel, cfg *structpb.Struct) *inlineFlow {
	eng, err := flowengine.New(flowengine.Options{Model: m, Tools: foundationalflows.Tools()})
	if err != nil {
		t.Fatal(err)
	}
	f := &inlineFlow{t: t, h: newHarness(t, harnessOptions{inline: &flowengine.Inline{Engine: eng}}), api: gitlabtest.NewAPI("user-oauth-token"), cfg: cfg}
	f.api.Workflow("77").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
	return f
}

func (f *inlineFlow) session(start *contract.StartWorkflowRequest) workhorse.Result {
	t := f.t
	t.Helper()
	v := "v1"
	start.WorkflowID, start.FlowConfig, start.FlowConfigSchemaVersion = "77", f.cfg, &v
	md := f.h.railsMD("duo_agent_platform")
	res, err := workhorse.Run(f.h.ctx(md), f.h.client, workhorse.Session{
		Metadata: md, Start: start, GitLab: f.api, OAuthToken: "user-oauth-token",
		Execute: func(a *contract.Action) *contract.ActionResponse {
			c := a.GetRunCommand()
			if c == nil {
				return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Error: "unexpected action"}}}
			}
			f.commands = append(f.commands, c.GetProgram()+" "+strings.Join(append(c.GetArguments(), c.GetFlags()...), " "))
			return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Response: "built 3 targets"}}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var approveCall = &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{}}}

// TestInlineChatFlowApproval runs an inline chat-environment flowConfig
// whose agent sets require_tool_approval through the gRPC service and a
// Workhorse-like client with an executor: the run_command call pauses the
// flow (TOOL_CALL_APPROVAL_REQUIRED, a "request" entry naming the call,
// nothing executed), the approval in the next startRequest runs exactly
// that call, the turn ends INPUT_REQUIRED, and the person's next message
// continues the same conversation.
func TestInlineChatFlowApproval(t *testing.T) {
	m := &scriptedModel{t: t}
	m.steps = []func(*testing.T, model.ChatRequest) model.Result{
		func(t *testing.T, r model.ChatRequest) model.Result {
			if lastMsg(r) != "build it" {
				t.Errorf("first request ends with %q", lastMsg(r))
			}
			return model.Result{Text: "Building.", ToolCalls: []model.ToolCall{call("b1", "run_command", `{"program":"make","args":"all"}`)}}
		},
		func(t *testing.T, r model.ChatRequest) model.Result {
			if got := toolResult(r, "b1"); got != "built 3 targets" {
				t.Errorf("approved call's result %q", got)
			}
			return model.Result{Text: "The build succeeded."}
		},
		func(t *testing.T, r model.ChatRequest) model.Result {
			if lastMsg(r) != "and the tests?" || toolResult(r, "b1") == "" {
				t.Errorf("the next message lost the conversation: %+v", r.Messages)
			}
			return model.Result{Text: "Run them with make test."}
		},
	}
	f := newInlineFlow(t, m, inlineFlowConfig(t, "chat", `"require_tool_approval": true`))
	api, session := f.api, f.session

	res := session(&contract.StartWorkflowRequest{Goal: "build it"})
	if res.Last.GetStatus() != "TOOL_CALL_APPROVAL_REQUIRED" || api.Workflow("77").Status != "tool_call_approval_required" || len(f.commands) != 0 {
		t.Fatalf("paused: status %s, Rails %s, commands %v", res.Last.GetStatus(), api.Workflow("77").Status, f.commands)
	}
	l := logOf(t, res.Last)
	if e := l[len(l)-1]; e["message_type"] != "request" || e["correlation_id"] != "b1" || e["tool_info"].(map[string]any)["name"] != "run_command" {
		t.Fatalf("approval request entry %v", e)
	}

	res = session(&contract.StartWorkflowRequest{Approval: approveCall})
	if res.Last.GetStatus() != "INPUT_REQUIRED" || api.Workflow("77").Status != "input_required" || len(f.commands) != 1 || !strings.HasPrefix(f.commands[0], "make") {
		t.Fatalf("approved: status %s, Rails %s, commands %v", res.Last.GetStatus(), api.Workflow("77").Status, f.commands)
	}
	l = logOf(t, res.Last)
	if e := l[len(l)-1]; e["message_type"] != "agent" || e["content"] != "The build succeeded." {
		t.Fatalf("answer entry %v", e)
	}

	res = session(&contract.StartWorkflowRequest{Goal: "and the tests?"})
	if res.Last.GetStatus() != "INPUT_REQUIRED" || len(f.commands) != 1 || len(m.calls) != 3 {
		t.Fatalf("next message: status %s, commands %v, %d model calls", res.Last.GetStatus(), f.commands, len(m.calls))
	}
}

// TestInlineFlowApprovalSettings: end to end, an agent without
// require_tool_approval runs its command at once in a chat flow, one that
// lists the tool in pre_approved_tools too, and an ambient flow whose
// agent sets require_tool_approval waits for the approval (GitLab allows
// it in every environment) and then finishes.
func TestInlineFlowApprovalSettings(t *testing.T) {
	for name, tc := range map[string]struct {
		env, keys string
		waits     bool
		end       string // the last checkpoint's status
	}{
		"chat without require_tool_approval": {env: "chat", end: "INPUT_REQUIRED"},
		"chat with the tool pre-approved":    {env: "chat", keys: `"require_tool_approval": true, "pre_approved_tools": ["run_command"]`, end: "INPUT_REQUIRED"},
		"ambient with require_tool_approval": {env: "ambient", keys: `"require_tool_approval": true`, waits: true, end: "FINISHED"},
	} {
		t.Run(name, func(t *testing.T) {
			m := &scriptedModel{t: t}
			m.steps = []func(*testing.T, model.ChatRequest) model.Result{
				func(*testing.T, model.ChatRequest) model.Result {
					return model.Result{ToolCalls: []model.ToolCall{call("b1", "run_command", `{"program":"make"}`)}}
				},
				func(t *testing.T, r model.ChatRequest) model.Result {
					if got := toolResult(r, "b1"); got != "built 3 targets" {
						t.Errorf("the call's result %q", got)
					}
					return model.Result{Text: "Built."}
				},
			}
			f := newInlineFlow(t, m, inlineFlowConfig(t, tc.env, tc.keys))
			res := f.session(&contract.StartWorkflowRequest{Goal: "build it"})
			if tc.waits {
				if res.Last.GetStatus() != "TOOL_CALL_APPROVAL_REQUIRED" || len(f.commands) != 0 {
					t.Fatalf("status %s, commands %v; want a pause", res.Last.GetStatus(), f.commands)
				}
				res = f.session(&contract.StartWorkflowRequest{Approval: approveCall})
			}
			if res.Last.GetStatus() != tc.end || len(f.commands) != 1 || len(m.calls) != 2 {
				t.Fatalf("status %s, commands %v, %d model calls", res.Last.GetStatus(), f.commands, len(m.calls))
			}
		})
	}
}

func lastMsg(r model.ChatRequest) string { return r.Messages[len(r.Messages)-1].Content }
