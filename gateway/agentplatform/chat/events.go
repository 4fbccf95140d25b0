package chat

import (
	"context"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// applyHumanEvents applies, on resume, what the user queued for the
// workflow while no session ran it (humanloop.ReadQueued): messages
// become the user's input, stop stops the workflow, pause parks it. done
// reports that the session ends with out.
func (r *run) applyHumanEvents(ctx context.Context) (out flow.Outcome, done bool, err error) {
	q, err := humanloop.ReadQueued(ctx, r.gl, r.w.ID, r.st.conv.Waiting() != nil)
	if err != nil {
		return "", true, err
	}
	for _, m := range q.Messages {
		r.st.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: m, Status: ptr("success")})
		r.st.conv.Messages = append(r.st.conv.Messages, model.Message{Role: "user", Content: m})
	}
	switch {
	case q.Stop:
		return r.finish(ctx, humanloop.StatusStopped, gitlabapi.EventStop, flow.Stopped)
	case q.Paused:
		return r.finish(ctx, humanloop.StatusPaused, gitlabapi.EventPause, flow.Paused)
	}
	return "", false, nil
}
