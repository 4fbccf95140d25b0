package humanloop

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

func calls(names ...string) []model.ToolCall {
	var out []model.ToolCall
	for i, n := range names {
		out = append(out, model.ToolCall{ID: fmt.Sprint("c", i), Type: "function", Function: model.ToolCallFunction{Name: n}})
	}
	return out
}

// TestDecide: what each startRequest does to the waiting calls.
func TestDecide(t *testing.T) {
	yes, msg := true, "not on main"
	tests := []struct {
		name       string
		pending    []model.ToolCall
		approval   *contract.Approval
		approved   bool
		results    []string
		note       string
		remembered []string
	}{
		{"nothing waits", nil, &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{}}}, false, nil, "", nil},
		{"approve", calls("push", "read"), &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{}}}, true, nil, "", nil},
		{"approve and remember", calls("push"), &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{RememberApproval: &yes}}}, true, nil, "", []string{"push"}},
		{"reject with a reason", calls("push", "read"), &contract.Approval{UserDecision: &contract.Approval_Rejection{Rejection: &contract.Approval_Rejected{Message: &msg}}}, false,
			[]string{"The user rejected this tool call. Their reason: not on main", "Not run: an earlier tool call of the same step was rejected."}, "Rejected the tool call. not on main", nil},
		{"a message instead of a decision", calls("push"), nil, false, []string{"The user rejected this tool call."}, "Rejected the tool call.", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Approvals{Pending: tc.pending}
			d := a.Decide(&contract.StartWorkflowRequest{Approval: tc.approval, Goal: "next"})
			var results []string
			for i, m := range d.Results {
				if m.Role != "tool" || m.ToolCallID != tc.pending[i].ID {
					t.Errorf("result %d answers %q as %s", i, m.ToolCallID, m.Role)
				}
				results = append(results, m.Content)
			}
			// Only a rejection with a message carries feedback (GitLab's MODIFY).
			if wantFeedback := tc.name == "reject with a reason"; (d.Feedback == msg) != wantFeedback || (!wantFeedback && d.Feedback != "") {
				t.Errorf("feedback %q", d.Feedback)
			}
			if d.Approved != tc.approved || strings.Join(results, "|") != strings.Join(tc.results, "|") || d.Note != tc.note ||
				strings.Join(a.Remembered, ",") != strings.Join(tc.remembered, ",") {
				t.Fatalf("decision %+v, remembered %v", d, a.Remembered)
			}
			if (len(a.Pending) > 0) != tc.approved {
				t.Fatalf("pending after the decision: %v", a.Pending)
			}
		})
	}
}

// TestApprovalBounds: pending calls and remembered tools are bounded, and
// an approval for another tool is the client's error.
func TestApprovalBounds(t *testing.T) {
	var a Approvals
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprint("tool", i)
	}
	a.Wait(calls(many...))
	if len(a.Pending) != MaxCalls {
		t.Fatalf("%d pending", len(a.Pending))
	}
	yes := true
	for i := range 100 {
		a.Pending = calls(fmt.Sprint("t", i))
		a.Decide(&contract.StartWorkflowRequest{Approval: &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{RememberApproval: &yes}}}})
	}
	if len(a.Remembered) != MaxRemembered || !a.Remembers("t0") || a.Remembers("t99") {
		t.Fatalf("%d remembered", len(a.Remembered))
	}
	other := "read"
	err := (&Approvals{Pending: calls("push")}).CheckDecision(&contract.StartWorkflowRequest{Approval: &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{ToolName: &other}}}})
	var ce *flow.ClientError
	if !errors.As(err, &ce) || ce.Message != `the approval names tool "read", but "push" is waiting for approval` {
		t.Fatalf("%v", err)
	}
}
