package gitlabtest

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestAPIHumanEvents: GET lists queued events only, a page at a time; PUT
// accepts Rails' two event_status values and marks the event.
func TestAPIHumanEvents(t *testing.T) {
	a := NewAPI("tok")
	first := a.QueueEvent("3", "message", "hello")
	second := a.QueueEvent("3", "stop", "")
	list := func(query string) []HumanEvent {
		t.Helper()
		req := httptest.NewRequest("GET", "/api/v4/ai/duo_workflows/workflows/3/events"+query, nil)
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		var evs []HumanEvent
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &evs) != nil {
			t.Fatalf("GET events: %d %s", rec.Code, rec.Body.String())
		}
		return evs
	}
	if evs := list("?per_page=1"); len(evs) != 1 || evs[0].ID != first || evs[0].Message != "hello" || evs[0].Status != "queued" {
		t.Fatalf("page 1: %+v", evs)
	}
	if evs := list("?per_page=1&page=2"); len(evs) != 1 || evs[0].ID != second {
		t.Fatalf("page 2: %+v", evs)
	}
	put := func(id int64, body string) int {
		code, _ := apiDo(t, a, "PUT", "/api/v4/ai/duo_workflows/workflows/3/events/"+strconv.FormatInt(id, 10), body, "tok")
		return code
	}
	if code := put(first, `{"event_status":"read"}`); code != 400 {
		t.Fatalf("invalid status: %d", code)
	}
	if code := put(99, `{"event_status":"delivered"}`); code != 404 {
		t.Fatalf("unknown event: %d", code)
	}
	if code := put(first, `{"event_status":"delivered"}`); code != 200 {
		t.Fatalf("ack: %d", code)
	}
	if evs := list(""); len(evs) != 1 || evs[0].ID != second {
		t.Fatalf("after ack: %+v", evs)
	}
	if st := a.EventStatuses("3"); st[first] != "delivered" || st[second] != "queued" {
		t.Fatalf("statuses %v", st)
	}
}
