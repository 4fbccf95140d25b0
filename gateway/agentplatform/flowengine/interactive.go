package flowengine

import (
	"context"
	"errors"
	"slices"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// What an interactive flow waits for between sessions (persisted).
const (
	waitApproval = "approval"
	waitInput    = "input"
)

// errWaitApproval unwinds a step whose tool call needs the person's
// approval; Run persists the pending call and ends the session with
// TOOL_CALL_APPROVAL_REQUIRED.
var errWaitApproval = errors.New("a tool call waits for the person's approval")

// interactive reports whether a person takes turns in the flow (chat and
// chat-partial environments): the flow ends each turn waiting for their
// next message instead of finishing. Ambient flows run in a CI job and
// finish.
func (r *run) interactive() bool { return r.cfg.Environment != flowconfig.EnvAmbient }

// holdsState reports whether sessions of the flow carry state to the
// next one beyond the finished steps' values: the waiting step's history
// and the approval state. That is every interactive flow, and any flow
// with an agent that asks for approval (GitLab allows
// require_tool_approval in every environment).
func (r *run) holdsState() bool {
	return r.interactive() || slices.ContainsFunc(r.cfg.Components, func(c flowconfig.Component) bool { return c.RequireToolApproval })
}

// mustAsk reports whether component c needs the person's approval before
// running t. As in GitLab's AgentComponent, only an AgentComponent with
// require_tool_approval asks, and not for a tool it lists in
// pre_approved_tools, one whose privilege the workflow pre-approves, one
// the client lists as pre-approved, or one the person approved for the
// rest of the workflow. Other component types never ask.
func (r *run) mustAsk(c *flowconfig.Component, t *flowtools.Tool) bool {
	if c.Type != flowconfig.TypeAgent || !c.RequireToolApproval || slices.Contains(c.PreApprovedTools, t.Name) {
		return false
	}
	return !flowtools.Allowed(t, r.w.PreApprovedPrivileges) && !slices.Contains(r.s.Start().GetPreapprovedTools(), t.Name) &&
		!r.approvals.Remembers(t.Name)
}

// askApproval parks call (and the calls after it, already in
// r.approvals.Pending) for the person's decision.
func (r *run) askApproval(t *flowtools.Tool, args map[string]any, call model.ToolCall) error {
	r.addLog(humanloop.Request(t.Name, logArgs(args), call.ID))
	return errWaitApproval
}

// takeTurn brings the person's input into a resumed interactive flow: the
// events they queued, the decision on a waiting tool call, and their next
// message, which continues the conversation of the last model step when
// that was an agent step, else starts the flow over with it as the goal
// (a one-off step's forced call is no conversation). done reports
// that the session ends with out.
func (r *run) takeTurn(ctx context.Context, enter string) (out flow.Outcome, done bool, err error) {
	start := r.s.Start()
	waiting := r.waiting
	r.waiting = ""
	if waiting == "" {
		if !r.resumed && r.cfg.Environment == flowconfig.EnvChat && start.GetGoal() != "" {
			r.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: bound(start.GetGoal(), maxValueBytes), Status: ptr("success")})
		}
		return "", false, nil
	}
	var msgs []string
	if enter == gitlabapi.EventResume {
		q, err := humanloop.ReadQueued(ctx, r.gl, r.w.ID, r.approvals.Waiting() != nil)
		if err != nil {
			return "", true, err
		}
		msgs = q.Messages
		switch {
		case q.Stop:
			r.userMessages(msgs)
			out, err := r.park(ctx, humanloop.StatusStopped, gitlabapi.EventStop, flow.Stopped, waiting)
			return out, true, err
		case q.Paused:
			r.userMessages(msgs)
			out, err := r.park(ctx, humanloop.StatusPaused, gitlabapi.EventPause, flow.Paused, waiting)
			return out, true, err
		}
	}
	if waiting == waitApproval && start.GetApproval() == nil && start.GetGoal() == "" && len(msgs) == 0 && r.approvals.Waiting() != nil {
		// Nothing decided (a reconnect): keep waiting rather than take
		// silence for a rejection.
		out, err := r.park(ctx, humanloop.StatusApprovalRequired, gitlabapi.EventRequireToolCallApproval, flow.ToolApprovalRequired, waitApproval)
		return out, true, err
	}
	if waiting == waitApproval {
		d := r.approvals.Decide(start)
		r.approved, r.decided = d.Approved, true
		// The refusals answer calls of the paused step's history only (a
		// deterministic step an earlier version paused has none). As in GitLab's flows, a
		// rejection with a message (MODIFY) also gives the model the
		// person's feedback and shows it in the UI log; a plain one adds
		// nothing there (the UI closes the approval box).
		if r.conv != nil && r.conv.component == r.next {
			r.conv.msgs = append(r.conv.msgs, d.Results...)
			if d.Feedback != "" {
				r.conv.msgs = append(r.conv.msgs, model.Message{Role: "user", Content: d.Feedback})
			}
		}
		if d.Feedback != "" {
			r.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: bound(d.Feedback, maxValueBytes), Status: ptr("success")})
		}
	}
	if start.GetApproval() == nil && start.GetGoal() != "" {
		msgs = append(msgs, start.GetGoal())
	}
	if waiting == waitInput && len(msgs) == 0 {
		// Nothing new (a reconnect): keep waiting.
		out, err := r.park(ctx, humanloop.StatusInputRequired, gitlabapi.EventRequireInput, flow.InputRequired, waitInput)
		return out, true, err
	}
	r.userMessages(msgs)
	if waiting == waitInput && len(msgs) > 0 {
		if c := r.cfg.Component(r.convComponent()); c != nil && c.Type == flowconfig.TypeAgent {
			r.next = c.Name
		} else {
			r.conv = nil
			r.next = r.cfg.Flow.EntryPoint
			r.values["goal"] = bound(msgs[len(msgs)-1], maxValueBytes)
		}
	}
	r.cont = true
	return "", false, nil
}

// userMessages records the person's messages in the UI log and, when an
// agent step's conversation continues, in its history.
func (r *run) userMessages(msgs []string) {
	for _, m := range msgs {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: bound(m, maxValueBytes), Status: ptr("success")})
		if r.conv != nil {
			r.conv.msgs = append(r.conv.msgs, model.Message{Role: "user", Content: m})
		}
	}
}

// park persists the flow waiting for the person (or stopped/paused by
// them), moves Rails' workflow with event and tells the client.
func (r *run) park(ctx context.Context, status, event string, out flow.Outcome, waiting string) (flow.Outcome, error) {
	r.status, r.waiting = status, waiting
	if err := r.persist(ctx); err != nil {
		return "", err
	}
	if err := r.gl.StatusEvent(ctx, r.w.ID, event); err != nil {
		return "", err
	}
	return out, nil
}

// conversationFor returns the model history component c works with: the
// resumed one when c continues after the person's input, else a new one.
func (r *run) conversationFor(c *flowconfig.Component) (*conversation, error) {
	if r.cont && r.conv != nil && r.conv.component == c.Name {
		r.cont = false
		return r.conv, nil
	}
	r.cont = false
	r.approvals.Pending = nil
	conv, err := r.start(c)
	if err != nil {
		return nil, err
	}
	conv.component = c.Name
	r.conv = conv
	return conv, nil
}

// convComponent names the step whose history r.conv is ("" for none).
func (r *run) convComponent() string {
	if r.conv == nil {
		return ""
	}
	return r.conv.component
}
