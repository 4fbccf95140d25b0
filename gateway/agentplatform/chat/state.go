package chat

import (
	"encoding/json"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/google/uuid"
)

// conversation is this service's private part of a checkpoint: the model
// history and, while waiting for approval, the calls not yet run (the
// embedded fields keep their JSON keys "pending" and "remembered").
type conversation struct {
	Messages []model.Message `json:"messages"`
	humanloop.Approvals
}

// state is one session's view of the workflow.
type state struct {
	goal   string // the workflow's first goal (__start__.goal)
	status string
	log    []gitlabapi.UIChatLogEntry
	conv   conversation
	lastTS string // thread_ts of the last persisted checkpoint
	now    func() time.Time
}

func stateFrom(cp *gitlabapi.Checkpoint, now func() time.Time) (*state, error) {
	st := &state{now: now}
	if cp == nil {
		return st, nil
	}
	st.lastTS = cp.ID
	st.status = cp.ChannelValues.Status
	st.log = cp.ChannelValues.UIChatLog
	if cp.ChannelValues.Start != nil {
		st.goal = cp.ChannelValues.Start.Goal
	}
	if len(cp.ChannelValues.Conversation) > 0 {
		if err := json.Unmarshal(cp.ChannelValues.Conversation, &st.conv); err != nil {
			return nil, errCheckpointState
		}
	}
	if len(st.conv.Messages) > maxHistoryMessages {
		st.conv.Messages = st.conv.Messages[len(st.conv.Messages)-maxHistoryMessages:]
	}
	return st, nil
}

// maxHistoryMessages bounds the history kept in checkpoints.
const maxHistoryMessages = 400

func (st *state) timestamp() string { return st.now().UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

// addLog appends a chat-log entry and returns its index.
func (st *state) addLog(e gitlabapi.UIChatLogEntry) int {
	if e.Timestamp == "" {
		e.Timestamp = st.timestamp()
	}
	if e.MessageID == "" {
		e.MessageID = e.MessageType + "-" + uuid.NewString()
	}
	st.log = append(st.log, e)
	return len(st.log) - 1
}

// checkpoint renders the state for persisting.
func (st *state) checkpoint() (*gitlabapi.Checkpoint, error) {
	conv, err := json.Marshal(st.conv)
	if err != nil {
		return nil, err
	}
	return &gitlabapi.Checkpoint{
		ChannelValues: gitlabapi.ChannelValues{
			UIChatLog: st.log, Status: st.status, Start: &gitlabapi.StartValues{Goal: st.goal},
			Plan: &gitlabapi.Plan{Steps: []gitlabapi.PlanStep{}}, Conversation: conv,
		},
	}, nil
}

func ptr(s string) *string { return &s }
