package gitlabtest

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
)

// HumanEvent is a workflow's human event as Rails keeps it
// (Ai::DuoWorkflows::Event: id, event_type, event_status, message).
type HumanEvent struct {
	ID      int64  `json:"id"`
	Type    string `json:"event_type"`
	Status  string `json:"event_status"`
	Message string `json:"message"`
}

var reWorkflowEvents = regexp.MustCompile(`^/api/v4/ai/duo_workflows/workflows/(\d+)/events(?:/(\d+))?$`)

// QueueEvent adds a queued human event to workflow id, as the web UI does
// (POST …/events), and returns its id.
func (a *API) QueueEvent(workflowID, eventType, message string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	wf := a.workflowLocked(workflowID)
	a.eventSeq++
	wf.Events = append(wf.Events, &HumanEvent{ID: a.eventSeq, Type: eventType, Status: "queued", Message: message})
	return a.eventSeq
}

// EventStatuses returns event id → event_status of workflow id's events.
func (a *API) EventStatuses(workflowID string) map[int64]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[int64]string{}
	for _, e := range a.workflowLocked(workflowID).Events {
		out[e.ID] = e.Status
	}
	return out
}

// eventsRoute answers GET …/events (queued events, paginated as Rails
// does with per_page/page) and PUT …/events/:event_id {event_status}.
func (a *API) eventsRoute(w http.ResponseWriter, r *http.Request, id, eventID string, body []byte) {
	wf := a.workflowLocked(id)
	switch {
	case eventID == "" && r.Method == http.MethodGet:
		var queued []*HumanEvent
		for _, e := range wf.Events {
			if e.Status == "queued" {
				queued = append(queued, e)
			}
		}
		perPage, page := 20, 1
		if n, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && n > 0 && n <= 100 {
			perPage = n
		}
		if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n > 0 {
			page = n
		}
		from := min((page-1)*perPage, len(queued))
		writeJSON(w, 200, append([]*HumanEvent{}, queued[from:min(from+perPage, len(queued))]...))
	case eventID != "" && r.Method == http.MethodPut:
		var req struct {
			Status string `json:"event_status"`
		}
		if json.Unmarshal(body, &req) != nil || (req.Status != "queued" && req.Status != "delivered") {
			writeJSON(w, 400, map[string]any{"error": "event_status does not have a valid value"})
			return
		}
		for _, e := range wf.Events {
			if strconv.FormatInt(e.ID, 10) == eventID {
				e.Status = req.Status
				writeJSON(w, 200, e)
				return
			}
		}
		writeJSON(w, 404, map[string]any{"message": "404 Not found"})
	default:
		writeJSON(w, 405, map[string]any{"message": "405 Method Not Allowed"})
	}
}
