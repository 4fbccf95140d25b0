package flowengine

import (
	"encoding/json"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
)

// maxStateBytes bounds the engine's state in a checkpoint; a larger state
// is not saved (a retry then starts the flow over).
const maxStateBytes = 2 << 20

// flowState is the engine's private part of a persisted checkpoint: where
// a retry continues and what the finished components produced.
type flowState struct {
	Flow      string            `json:"flow"`
	Next      string            `json:"next"`
	Values    map[string]string `json:"values"`
	ToolCalls int               `json:"tool_calls"`
	Tokens    int               `json:"tokens"`
}

// stateJSON encodes the state for the checkpoint, or nil when too large.
func (r *run) stateJSON() json.RawMessage {
	b, err := json.Marshal(flowState{Flow: r.cfg.Name, Next: r.next, Values: r.values, ToolCalls: r.toolCalls, Tokens: r.tokens})
	if err != nil || len(b) > maxStateBytes {
		return nil
	}
	return b
}

// resume restores a retried workflow's state from its last checkpoint: the
// UI log, the finished components' values, and the
// component to continue with. It reports false (start over) for a new
// workflow, another flow's state, or a flow that had ended.
func (r *run) resume() bool {
	cp := r.w.Checkpoint
	if cp == nil || r.w.StatusName == "created" || r.w.StatusName == "" || len(cp.ChannelValues.Conversation) == 0 {
		return false
	}
	var st flowState
	if json.Unmarshal(cp.ChannelValues.Conversation, &st) != nil || st.Flow != r.cfg.Name || st.Next == "" ||
		st.Next == flowconfig.End || r.cfg.Component(st.Next) == nil {
		return false
	}
	for k, v := range st.Values {
		// Session facts (goal, project, date) stay this session's.
		if _, fresh := r.values[k]; !fresh {
			r.values[k] = bound(v, maxValueBytes)
		}
	}
	// Budgets start afresh: a retry is a new attempt.
	r.next = st.Next
	r.log = cp.ChannelValues.UIChatLog
	if len(r.log) > maxLogEntries {
		r.log = r.log[len(r.log)-maxLogEntries:]
	}
	if g := cp.ChannelValues.Start; g != nil && g.Goal != "" {
		r.goal = g.Goal
	}
	return true
}
