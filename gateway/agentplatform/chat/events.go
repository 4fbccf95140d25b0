package chat

import (
	"context"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// applyHumanEvents reads, on resume, what the user queued for the
// workflow while no session ran it (GET …/events), applies each event in
// order and acknowledges it (PUT …/events/:id delivered): a message or
// response becomes the user's input, stop stops the workflow, pause parks
// it unless a later resume follows. While a tool call waits for a
// decision, messages and what follows them stay queued for a later
// session (a user turn cannot sit between a tool call and its result).
// done reports that the session ends with out.
func (r *run) applyHumanEvents(ctx context.Context) (out flow.Outcome, done bool, err error) {
	evs, err := r.gl.QueuedEvents(ctx, r.w.ID)
	if err != nil {
		return "", true, err
	}
	paused := false
	for _, e := range evs {
		switch e.Type {
		case gitlabapi.HumanMessage, gitlabapi.HumanResponse:
			if len(r.st.conv.Pending) > 0 {
				return r.afterEvents(ctx, paused)
			}
			if e.Message != "" {
				r.st.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: e.Message, Status: ptr("success")})
				r.st.conv.Messages = append(r.st.conv.Messages, model.Message{Role: "user", Content: e.Message})
			}
		case gitlabapi.HumanStop:
			if err := r.gl.AckEvent(ctx, r.w.ID, e.ID); err != nil {
				return "", true, err
			}
			return r.finish(ctx, statusStopped, gitlabapi.EventStop, flow.Stopped)
		case gitlabapi.HumanPause:
			paused = true
		case gitlabapi.HumanResume:
			paused = false
		}
		// require_input and unknown types carry nothing to apply here.
		if err := r.gl.AckEvent(ctx, r.w.ID, e.ID); err != nil {
			return "", true, err
		}
	}
	return r.afterEvents(ctx, paused)
}

// afterEvents parks a workflow the user paused.
func (r *run) afterEvents(ctx context.Context, paused bool) (flow.Outcome, bool, error) {
	if paused {
		return r.finish(ctx, statusPaused, gitlabapi.EventPause, flow.Paused)
	}
	return "", false, nil
}
