package gitlabapi

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
)

func TestQueuedEventsAndAck(t *testing.T) {
	f := &fakeExecutor{handle: func(r *contract.RunHTTPRequest) *contract.HttpResponse {
		if r.GetMethod() == "PUT" {
			return &contract.HttpResponse{StatusCode: 200, Body: `{"id":3,"event_status":"delivered"}`}
		}
		// Rails' entity shape; out of order and one already delivered.
		return &contract.HttpResponse{StatusCode: 200, Body: `[{"id":5,"event_type":"message","event_status":"queued","message":"b"},
			{"id":3,"event_type":"pause","event_status":"queued","message":""},
			{"id":4,"event_type":"stop","event_status":"delivered","message":""}]`}
	}}
	cl := New(f)
	evs, err := cl.QueuedEvents(context.Background(), "9")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].ID != 3 || evs[0].Type != "pause" || evs[1].ID != 5 || evs[1].Message != "b" {
		t.Fatalf("events %+v", evs)
	}
	if got := f.seen[0].GetPath(); got != "/api/v4/ai/duo_workflows/workflows/9/events?per_page=20" {
		t.Fatalf("path %s", got)
	}
	if err := cl.AckEvent(context.Background(), "9", 3); err != nil {
		t.Fatal(err)
	}
	if r := f.seen[1]; r.GetMethod() != "PUT" || r.GetPath() != "/api/v4/ai/duo_workflows/workflows/9/events/3" || r.GetBody() != `{"event_status":"delivered"}` {
		t.Fatalf("ack %v", r)
	}
}

func TestQueuedEventsErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		id   string
		resp *contract.HttpResponse
		want string
	}{
		{"truncated page", "9", &contract.HttpResponse{StatusCode: 200, Body: `[{"id":1,"message":"` + strings.Repeat("x", BodyLimit)}, "cut by the executor"},
		{"not a list", "9", &contract.HttpResponse{StatusCode: 200, Body: `{"id":1}`}, "not the JSON expected"},
		{"forbidden", "9", &contract.HttpResponse{StatusCode: 403, Body: `{"message":"403 Forbidden"}`}, "403"},
		{"bad id", "../1", nil, "not a number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := New(&fakeExecutor{handle: func(*contract.RunHTTPRequest) *contract.HttpResponse { return c.resp }})
			_, err := cl.QueuedEvents(context.Background(), c.id)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if c.name == "truncated page" && !errors.Is(err, ErrTruncated) {
				t.Fatalf("not ErrTruncated: %v", err)
			}
		})
	}
}
