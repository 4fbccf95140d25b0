package humanloop

import (
	"context"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
)

// Queued is the effect of the events a person queued for a workflow while
// no session ran it.
type Queued struct {
	// Messages are the person's messages and responses, in order.
	Messages []string
	// Stop: the person stopped the workflow (end it STOPPED).
	Stop bool
	// Paused: a pause not followed by a resume (park it PAUSED).
	Paused bool
}

// ReadQueued reads the queued events (GET …/events) on resume and
// acknowledges each one it applies (PUT …/events/:id delivered), in
// order, until a stop. While a tool call waits for a decision (waiting),
// a message and everything after it stay queued for a later session: a
// person's turn cannot sit between a tool call and its result.
func ReadQueued(ctx context.Context, gl *gitlabapi.Client, workflowID string, waiting bool) (Queued, error) {
	evs, err := gl.QueuedEvents(ctx, workflowID)
	if err != nil {
		return Queued{}, err
	}
	var q Queued
	for _, e := range evs {
		switch e.Type {
		case gitlabapi.HumanMessage, gitlabapi.HumanResponse:
			if waiting {
				return q, nil
			}
			if e.Message != "" {
				q.Messages = append(q.Messages, e.Message)
			}
		case gitlabapi.HumanStop:
			q.Stop = true
		case gitlabapi.HumanPause:
			q.Paused = true
		case gitlabapi.HumanResume:
			q.Paused = false
		}
		// require_input and unknown types carry nothing to apply.
		if err := gl.AckEvent(ctx, workflowID, e.ID); err != nil {
			return Queued{}, err
		}
		if q.Stop {
			return q, nil
		}
	}
	return q, nil
}
