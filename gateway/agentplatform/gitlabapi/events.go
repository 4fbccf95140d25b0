package gitlabapi

import (
	"context"
	"fmt"
	"sort"
	"strconv"
)

// Human event types (Rails' Ai::DuoWorkflows::Event event_type): what a
// user asked of a workflow while no session ran it.
const (
	HumanPause        = "pause"
	HumanResume       = "resume"
	HumanStop         = "stop"
	HumanMessage      = "message"
	HumanResponse     = "response"
	HumanRequireInput = "require_input"
)

// HumanEvent is one queued event (Rails' API::Entities::Ai::DuoWorkflows::Event).
type HumanEvent struct {
	ID      int64  `json:"id"`
	Type    string `json:"event_type"`
	Status  string `json:"event_status"`
	Message string `json:"message"`
}

// QueuedEvents reads the first page of the workflow's queued human events
// (GET …/workflows/:id/events; Rails lists only queued ones, paginated),
// oldest first. A page cut by the executor is ErrTruncated.
func (c *Client) QueuedEvents(ctx context.Context, workflowID string) ([]HumanEvent, error) {
	if _, err := strconv.ParseUint(workflowID, 10, 64); err != nil {
		return nil, fmt.Errorf("workflow id %q is not a number", bounded(workflowID, 40))
	}
	var evs []HumanEvent
	if err := c.JSON(ctx, "GET", Paged(eventsPath(workflowID), 1), nil, &evs); err != nil {
		return nil, fmt.Errorf("read the human events of workflow %s: %w", workflowID, err)
	}
	queued := evs[:0]
	for _, e := range evs {
		// Rails answers queued events only; older versions may not filter.
		if e.Status == "" || e.Status == "queued" {
			queued = append(queued, e)
		}
	}
	sort.SliceStable(queued, func(i, j int) bool { return queued[i].ID < queued[j].ID })
	return queued, nil
}

// AckEvent marks a human event delivered (PUT …/events/:event_id with
// event_status delivered), so no later session applies it again.
func (c *Client) AckEvent(ctx context.Context, workflowID string, eventID int64) error {
	path := eventsPath(workflowID) + "/" + strconv.FormatInt(eventID, 10)
	if err := c.JSON(ctx, "PUT", path, map[string]string{"event_status": "delivered"}, nil); err != nil {
		return fmt.Errorf("acknowledge human event %d of workflow %s: %w", eventID, workflowID, err)
	}
	return nil
}

func eventsPath(workflowID string) string {
	return "/api/v4/ai/duo_workflows/workflows/" + workflowID + "/events"
}
