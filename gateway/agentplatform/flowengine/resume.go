package flowengine

import (
	"encoding/json"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// maxStateBytes bounds the engine's state in a checkpoint; a larger state
// loses its oldest history first and is otherwise not saved (a retry then
// starts the flow over).
const maxStateBytes = 2 << 20

// maxHistoryMessages bounds the step history kept in checkpoints.
const maxHistoryMessages = 400

// flowState is the engine's private part of a persisted checkpoint: where
// a retry continues and what the finished components produced; for
// flows that hold state between sessions (holdsState) also what the flow
// waits for, the last agent or one-off step's history and the approval
// state (the embedded fields keep their JSON keys "pending" and
// "remembered").
type flowState struct {
	Flow      string            `json:"flow"`
	Next      string            `json:"next"`
	Values    map[string]string `json:"values"`
	ToolCalls int               `json:"tool_calls"`
	Tokens    int               `json:"tokens"`
	Waiting   string            `json:"waiting,omitempty"`
	// Cycles counts each agent component's model cycles (max_cycles).
	Cycles map[string]int `json:"cycles,omitempty"`
	Step   *stepState     `json:"step,omitempty"`
	humanloop.Approvals
}

// stepState is one step's model history.
type stepState struct {
	Component string          `json:"component"`
	Messages  []model.Message `json:"messages"`
}

// stateJSON encodes the state for the checkpoint, dropping the oldest step
// history until it fits; nil when it does not.
func (r *run) stateJSON() json.RawMessage {
	st := flowState{Flow: r.cfg.Name, Next: r.next, Values: r.values, ToolCalls: r.toolCalls, Tokens: r.tokens, Cycles: r.cycles}
	if r.holdsState() {
		st.Waiting, st.Approvals = r.waiting, r.approvals
		if r.conv != nil {
			st.Step = &stepState{Component: r.conv.component, Messages: r.conv.msgs}
		}
	}
	for range 12 {
		b, err := json.Marshal(st)
		if err != nil {
			return nil
		}
		if len(b) <= maxStateBytes {
			return b
		}
		if st.Step == nil || len(st.Step.Messages) <= 2 {
			return nil
		}
		st.Step.Messages = dropOldest(st.Step.Messages)
	}
	return nil
}

// dropOldest keeps the first two messages (system prompt and task) and
// the newer half of the rest, never starting that half with a tool result
// whose call was dropped.
func dropOldest(msgs []model.Message) []model.Message {
	head := min(2, len(msgs))
	rest := msgs[head:]
	rest = rest[len(rest)/2:]
	for len(rest) > 0 && rest[0].Role == "tool" {
		rest = rest[1:]
	}
	return append(append([]model.Message{}, msgs[:head]...), rest...)
}

// resume restores a retried or resumed workflow's state from its last
// checkpoint: the UI log, the finished components' values, the component
// to continue with and, for flows that hold state, the waiting step. It
// reports false (start over) for a new workflow, another flow's state, or
// a flow that had ended.
func (r *run) resume() bool {
	cp := r.w.Checkpoint
	if cp == nil || r.w.StatusName == "created" || r.w.StatusName == "" || len(cp.ChannelValues.Conversation) == 0 {
		return false
	}
	var st flowState
	if json.Unmarshal(cp.ChannelValues.Conversation, &st) != nil || st.Flow != r.cfg.Name {
		return false
	}
	waiting := (r.holdsState() && st.Waiting == waitApproval) || (r.interactive() && st.Waiting == waitInput)
	if !waiting && (st.Next == "" || st.Next == flowconfig.End || r.cfg.Component(st.Next) == nil) {
		return false
	}
	for k, v := range st.Values {
		// Session facts (goal, project, date) stay this session's.
		if _, fresh := r.values[k]; !fresh {
			r.values[k] = bound(v, maxValueBytes)
		}
	}
	// Budgets start afresh: a retry or a new turn is a new attempt.
	r.next = st.Next
	r.log = cp.ChannelValues.UIChatLog
	if len(r.log) > maxLogEntries {
		r.log = r.log[len(r.log)-maxLogEntries:]
	}
	if g := cp.ChannelValues.Start; g != nil && g.Goal != "" {
		r.goal = g.Goal
		// A later message of a chat is not the flow's goal.
		r.values["goal"] = bound(g.Goal, maxValueBytes)
	}
	for name, n := range st.Cycles {
		if c := r.cfg.Component(name); c != nil && c.MaxCycles != nil && n > 0 {
			r.cycles[name] = n
		}
	}
	if r.holdsState() {
		if waiting {
			r.waiting = st.Waiting
		}
		r.approvals = st.Approvals
		r.approvals.Pending = humanloop.BoundCalls(r.approvals.Pending)
		if len(r.approvals.Remembered) > humanloop.MaxRemembered {
			r.approvals.Remembered = r.approvals.Remembered[:humanloop.MaxRemembered]
		}
		if s := st.Step; s != nil && r.cfg.Component(s.Component) != nil {
			msgs := s.Messages
			for len(msgs) > maxHistoryMessages {
				msgs = dropOldest(msgs)
			}
			r.conv = &conversation{component: s.Component, msgs: msgs}
		}
	}
	return true
}
