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

// chatFlowConfig is a custom chat-environment flow as GitLab's AI Catalog
// sends it inline: one agent that may run commands.
const chatFlowConfig = `{"version": "v1", "environment": "chat",
 "prompts": [{"prompt_id": "builder", "prompt_template": {"system": "You build the project.", "user": "{{goal}}"}}],
 "components": [{"name": "builder", "type": "AgentComponent", "prompt_id": "builder", "inputs": ["context:goal"],
   "toolset": ["run_command"], "ui_log_events": ["on_agent_final_answer", "on_tool_execution_success"]}],
 "routers": [{"from": "builder", "to": "end"}], "flow": {"entry_point": "builder"}}`

// TestInlineChatFlowApproval runs an inline chat-environment flowConfig
// through the gRPC service and a Workhorse-like client with an executor:
// the run_command call pauses the flow (TOOL_CALL_APPROVAL_REQUIRED, a
// "request" entry naming the call, nothing executed), the approval in the
// next startRequest runs exactly that call, the turn ends INPUT_REQUIRED,
// and the person's next message continues the same conversation.
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
	eng, err := flowengine.New(flowengine.Options{Model: m, Tools: foundationalflows.Tools()})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{inline: &flowengine.Inline{Engine: eng}})
	api := gitlabtest.NewAPI("user-oauth-token")
	api.Workflow("77").Privileges = []string{flowtools.ReadOnlyGitLab, flowtools.RunCommands}
	var doc map[string]any
	if err := json.Unmarshal([]byte(chatFlowConfig), &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := structpb.NewStruct(doc)
	if err != nil {
		t.Fatal(err)
	}
	var commands []string
	md := h.railsMD("duo_agent_platform")
	session := func(start *contract.StartWorkflowRequest) workhorse.Result {
		t.Helper()
		v := "v1"
		start.WorkflowID, start.FlowConfig, start.FlowConfigSchemaVersion = "77", cfg, &v
		res, err := workhorse.Run(h.ctx(md), h.client, workhorse.Session{
			Metadata: md, Start: start, GitLab: api, OAuthToken: "user-oauth-token",
			Execute: func(a *contract.Action) *contract.ActionResponse {
				c := a.GetRunCommand()
				if c == nil {
					return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Error: "unexpected action"}}}
				}
				commands = append(commands, c.GetProgram()+" "+strings.Join(append(c.GetArguments(), c.GetFlags()...), " "))
				return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Response: "built 3 targets"}}}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	res := session(&contract.StartWorkflowRequest{Goal: "build it"})
	if res.Last.GetStatus() != "TOOL_CALL_APPROVAL_REQUIRED" || api.Workflow("77").Status != "tool_call_approval_required" || len(commands) != 0 {
		t.Fatalf("paused: status %s, Rails %s, commands %v", res.Last.GetStatus(), api.Workflow("77").Status, commands)
	}
	l := logOf(t, res.Last)
	if e := l[len(l)-1]; e["message_type"] != "request" || e["correlation_id"] != "b1" || e["tool_info"].(map[string]any)["name"] != "run_command" {
		t.Fatalf("approval request entry %v", e)
	}

	res = session(&contract.StartWorkflowRequest{Approval: &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{}}}})
	if res.Last.GetStatus() != "INPUT_REQUIRED" || api.Workflow("77").Status != "input_required" || len(commands) != 1 || !strings.HasPrefix(commands[0], "make") {
		t.Fatalf("approved: status %s, Rails %s, commands %v", res.Last.GetStatus(), api.Workflow("77").Status, commands)
	}
	l = logOf(t, res.Last)
	if e := l[len(l)-1]; e["message_type"] != "agent" || e["content"] != "The build succeeded." {
		t.Fatalf("answer entry %v", e)
	}

	res = session(&contract.StartWorkflowRequest{Goal: "and the tests?"})
	if res.Last.GetStatus() != "INPUT_REQUIRED" || len(commands) != 1 || len(m.calls) != 3 {
		t.Fatalf("next message: status %s, commands %v, %d model calls", res.Last.GetStatus(), commands, len(m.calls))
	}
}

func lastMsg(r model.ChatRequest) string { return r.Messages[len(r.Messages)-1].Content }
