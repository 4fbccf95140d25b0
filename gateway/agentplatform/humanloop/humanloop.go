package humanloop

import (
	"fmt"
	"slices"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// UI statuses of newCheckpoint actions and persisted checkpoints.
const (
	StatusRunning          = "RUNNING"
	StatusFinished         = "FINISHED"
	StatusFailed           = "FAILED"
	StatusStopped          = "STOPPED"
	StatusPaused           = "PAUSED"
	StatusInputRequired    = "INPUT_REQUIRED"
	StatusApprovalRequired = "TOOL_CALL_APPROVAL_REQUIRED"
)

// EnterEvent picks the status event with which a session (re)enters a
// workflow in Rails' status: start a new one, resume one that waits for
// the person, retry the rest.
func EnterEvent(status string) string {
	switch status {
	case "created", "":
		return gitlabapi.EventStart
	case "input_required", "tool_call_approval_required", "plan_approval_required", "paused":
		return gitlabapi.EventResume
	default:
		return gitlabapi.EventRetry
	}
}

// MaxRemembered bounds the tools one workflow remembers as approved.
const MaxRemembered = 64

// MaxCalls bounds the tool calls of one model answer that a flow runs or
// keeps pending (the first pending one awaits the decision, the rest run
// after it).
const MaxCalls = 32

// BoundCalls cuts a model answer's tool calls to MaxCalls; cut it before
// it enters the history, so every call kept gets a result.
func BoundCalls(calls []model.ToolCall) []model.ToolCall {
	return calls[:min(len(calls), MaxCalls)]
}

// Approvals is a workflow's persisted approval state.
type Approvals struct {
	// Pending are tool calls of the last assistant message still without
	// a result; the first one awaits the person's decision.
	Pending []model.ToolCall `json:"pending,omitempty"`
	// Remembered are tools the person approved with "remember approval":
	// later calls of them in this workflow run without asking.
	Remembered []string `json:"remembered,omitempty"`
}

// Wait records calls (an assistant message's, from the one that needs a
// decision on) as pending, bounded by MaxCalls.
func (a *Approvals) Wait(calls []model.ToolCall) {
	a.Pending = slices.Clone(BoundCalls(calls))
}

// Waiting returns the call awaiting a decision, or nil.
func (a *Approvals) Waiting() *model.ToolCall {
	if len(a.Pending) == 0 {
		return nil
	}
	return &a.Pending[0]
}

// Remembers reports whether the person approved tool for the rest of the
// workflow.
func (a *Approvals) Remembers(tool string) bool { return slices.Contains(a.Remembered, tool) }

// CheckDecision refuses an approval that names another tool than the one
// waiting, so nothing changes in GitLab for a stale approval box.
func (a *Approvals) CheckDecision(start *contract.StartWorkflowRequest) error {
	n := start.GetApproval().GetApproval().GetToolName()
	if w := a.Waiting(); n != "" && w != nil && n != w.Function.Name {
		return &flow.ClientError{Message: fmt.Sprintf("the approval names tool %q, but %q is waiting for approval", bounded(n, 64), w.Function.Name)}
	}
	return nil
}

// Decision is what a session does with the waiting calls.
type Decision struct {
	// Approved: the first pending call runs now, without asking again.
	Approved bool
	// Results answer every pending call with the refusal, in order (the
	// calls were rejected, or the person wrote instead of deciding); the
	// pending calls are cleared.
	Results []model.Message
	// Note is the person's part for the UI log ("" when approved).
	Note string
	// Feedback is the message the person rejected the call with ("" for
	// an approval or a plain rejection): GitLab's flows treat a rejection
	// with a message as MODIFY, feedback for the model.
	Feedback string
}

// Decide applies the startRequest's decision to the waiting calls; with
// none waiting it decides nothing.
func (a *Approvals) Decide(start *contract.StartWorkflowRequest) Decision {
	if a.Waiting() == nil {
		return Decision{}
	}
	message := ""
	switch d := start.GetApproval().GetUserDecision().(type) {
	case *contract.Approval_Approval:
		name := a.Pending[0].Function.Name
		if d.Approval.GetRememberApproval() && !a.Remembers(name) && len(a.Remembered) < MaxRemembered {
			a.Remembered = append(a.Remembered, name)
		}
		return Decision{Approved: true}
	case *contract.Approval_Rejection:
		message = d.Rejection.GetMessage()
	}
	text := "The user rejected this tool call."
	if message != "" {
		text += " Their reason: " + message
	}
	var out Decision
	for _, call := range a.Pending {
		out.Results = append(out.Results, model.Message{Role: "tool", ToolCallID: call.ID, Content: text})
		text = "Not run: an earlier tool call of the same step was rejected."
	}
	a.Pending = nil
	out.Feedback = message
	out.Note = "Rejected the tool call."
	if message != "" {
		out.Note += " " + message
	}
	return out
}

// Request is the ui_chat_log entry that asks the person to approve a call:
// GitLab's web UI renders a trailing "request" entry with tool_info as
// the approval prompt.
func Request(tool string, args map[string]any, callID string) gitlabapi.UIChatLogEntry {
	id := callID
	return gitlabapi.UIChatLogEntry{
		MessageType: "request", Content: "Allow the tool " + tool + "?",
		ToolInfo: &gitlabapi.ToolInfo{Name: tool, Args: args}, CorrelationID: &id,
	}
}

func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
