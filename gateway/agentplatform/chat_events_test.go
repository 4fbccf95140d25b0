package agentplatform

import (
	"slices"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// TestChatHumanEventsOnResume: a resumed chat reads the user's queued
// human events from GitLab, applies them in order and marks each
// delivered; what the model and GitLab see follows from the events.
func TestChatHumanEventsOnResume(t *testing.T) {
	type ev struct{ typ, msg string }
	lastUser := func(r model.ChatRequest) string {
		for i := len(r.Messages) - 1; i >= 0; i-- {
			if r.Messages[i].Role == "user" {
				return r.Messages[i].Content
			}
		}
		return ""
	}
	cases := []struct {
		name       string
		events     []ev
		goal       string // of the resuming startRequest
		wantUser   string // the user input the model sees; "" = no model call
		wantStatus string // last streamed checkpoint
		wantRails  string // workflow status in GitLab
		delivered  int    // events acknowledged
	}{
		{"message becomes the user's input", []ev{{"message", "and issue 2?"}}, "", "and issue 2?", "INPUT_REQUIRED", "input_required", 1},
		{"response then the new goal", []ev{{"response", "yes, go on"}, {"require_input", ""}}, "thanks", "thanks", "INPUT_REQUIRED", "input_required", 2},
		{"stop stops before any model call", []ev{{"stop", ""}, {"message", "never read"}}, "", "", "STOPPED", "stopped", 1},
		{"pause parks the workflow", []ev{{"pause", ""}}, "", "", "PAUSED", "paused", 1},
		{"resume cancels an earlier pause", []ev{{"pause", ""}, {"resume", ""}, {"message", "continue"}}, "", "continue", "INPUT_REQUIRED", "input_required", 3},
		{"no events: the goal alone", nil, "next", "next", "INPUT_REQUIRED", "input_required", 0},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newChatHarness(t)
			answer := func(*testing.T, model.ChatRequest) model.Result { return model.Result{Text: "Sure."} }
			h.model.steps = []func(*testing.T, model.ChatRequest) model.Result{answer}
			var seen string
			if c.wantUser != "" {
				h.model.steps = append(h.model.steps, func(_ *testing.T, r model.ChatRequest) model.Result {
					seen = lastUser(r)
					return model.Result{Text: "Done."}
				})
			}
			id := string(rune('1' + i))
			md := h.railsMD("duo_chat")
			if res, _, err := h.session(t, md, &contract.StartWorkflowRequest{WorkflowID: id, WorkflowDefinition: "chat", Goal: "check issue 1"}); err != nil || res.Last.Status != "INPUT_REQUIRED" {
				t.Fatalf("first session: %v %v", res.Last, err)
			}
			var ids []int64
			for _, e := range c.events {
				ids = append(ids, h.api.QueueEvent(id, e.typ, e.msg))
			}
			res, _, err := h.session(t, md, &contract.StartWorkflowRequest{WorkflowID: id, WorkflowDefinition: "chat", Goal: c.goal})
			if err != nil || res.Last.GetStatus() != c.wantStatus {
				t.Fatalf("resumed session: %v %v, want %s", res.Last, err, c.wantStatus)
			}
			if seen != c.wantUser {
				t.Errorf("model saw user input %q, want %q", seen, c.wantUser)
			}
			if c.wantUser != "" && c.goal != "" && c.events != nil && !strings.Contains(res.Last.Checkpoint, c.events[0].msg) {
				t.Errorf("the event's message is not in the chat log: %s", res.Last.Checkpoint)
			}
			if s := h.api.Workflow(id).Status; s != c.wantRails {
				t.Errorf("GitLab status %q, want %q", s, c.wantRails)
			}
			st := h.api.EventStatuses(id)
			for n, eid := range ids {
				want := "queued"
				if n < c.delivered {
					want = "delivered"
				}
				if st[eid] != want {
					t.Errorf("event %d (%s) is %q, want %q", eid, c.events[n].typ, st[eid], want)
				}
			}
			if !slices.Contains(h.api.Requests(), "GET /api/v4/ai/duo_workflows/workflows/"+id+"/events?per_page=20") {
				t.Errorf("no bounded events read: %v", h.api.Requests())
			}
		})
	}
}

// TestChatHumanMessageWaitsForApproval: while a tool call awaits a
// decision, a queued message is left for a later session.
func TestChatHumanMessageWaitsForApproval(t *testing.T) {
	h := newChatHarness(t)
	h.model.steps = []func(*testing.T, model.ChatRequest) model.Result{
		func(*testing.T, model.ChatRequest) model.Result {
			return model.Result{ToolCalls: []model.ToolCall{call("a", "create_work_item_note", `{"work_item_iid":1,"body":"n"}`)}}
		},
	}
	md := h.railsMD("duo_chat")
	if res, _, err := h.session(t, md, &contract.StartWorkflowRequest{WorkflowID: "21", WorkflowDefinition: "chat", Goal: "comment"}); err != nil || res.Last.Status != "TOOL_CALL_APPROVAL_REQUIRED" {
		t.Fatalf("%v %v", res.Last, err)
	}
	eid := h.api.QueueEvent("21", "message", "later")
	// Resuming without a decision rejects the call; the model is asked
	// again with the rejection and the message stays queued.
	h.model.steps = append(h.model.steps, func(_ *testing.T, r model.ChatRequest) model.Result {
		for _, m := range r.Messages {
			if m.Role == "user" && m.Content == "later" {
				t.Error("the queued message reached the model while a call awaited approval")
			}
		}
		return model.Result{Text: "ok"}
	})
	if _, _, err := h.session(t, md, &contract.StartWorkflowRequest{WorkflowID: "21", WorkflowDefinition: "chat"}); err != nil {
		t.Fatal(err)
	}
	if s := h.api.EventStatuses("21")[eid]; s != "queued" {
		t.Fatalf("event is %q, want queued", s)
	}
}
