package flowengine

import (
	"context"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

func hasMessage(r model.ChatRequest, part string) bool {
	for _, m := range r.Messages {
		if m.Role == "user" && strings.Contains(m.Content, part) {
			return true
		}
	}
	return false
}

// TestMaxCycles: an agent's max_cycles warns the model iteration_warning
// offset cycles before the limit, makes the last cycle a request for the
// final answer (calls of other tools are not run), fails the step when
// the model ignores it max_wrap_up_retries times, and stays under the
// engine's own step budget.
func TestMaxCycles(t *testing.T) {
	loop := model.Result{ToolCalls: []model.ToolCall{call("x", "echo", `{}`)}}
	final := model.Result{ToolCalls: []model.ToolCall{call("f", FinalResponseTool, `{"final_response":"Enough."}`)}}
	for name, tc := range map[string]struct {
		keys    string
		budget  Budget
		model   []model.Result
		out     flow.Outcome
		err     string
		reqs    int
		echoes  int
		warnAt  int // the request (1-based) that carries the warning; 0 for none
		wrapAt  int // the first request that asks for the final answer
		answers string
	}{
		"warned, then answers at the limit": {
			keys: "max_cycles: {threshold: 3, iteration_warning_offset: 1}", model: []model.Result{loop, loop, final},
			out: flow.Finished, reqs: 3, echoes: 2, warnAt: 2, wrapAt: 3, answers: "Enough.",
		},
		"ignores the wrap-up, then answers": {
			keys: "max_cycles: 2", model: []model.Result{loop, loop, final},
			out: flow.Finished, reqs: 3, echoes: 1, warnAt: 1, wrapAt: 2, answers: "Enough.",
		},
		"ignores the wrap-up three times": {
			keys: "max_cycles: {threshold: 1, iteration_warning_offset: null}", model: []model.Result{loop},
			err: "budget exceeded: max_cycles of component helper (the model kept calling tools after the limit) (1)", reqs: 3, wrapAt: 1,
		},
		"the engine's budget stays the ceiling": {
			keys: "max_cycles: 280", budget: Budget{MaxStepsPerComponent: 3}, model: []model.Result{loop},
			err: "budget exceeded: model steps of component helper (3)", reqs: 3, echoes: 3,
		},
	} {
		t.Run(name, func(t *testing.T) {
			api := gitlabtest.NewAPI("t")
			api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab}
			m := &scriptedModel{results: tc.model}
			e, _ := New(Options{Model: m, Tools: testTools, Budget: tc.budget})
			s := newSession(t, api, "")
			s.start.Goal = "dig"
			out, err := (&Defined{Engine: e, Config: chatFlow(t, "ambient", tc.keys)}).Run(context.Background(), s)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %s", err, tc.err)
				}
			} else if err != nil || out != tc.out {
				t.Fatalf("%v %v", out, err)
			}
			if len(m.reqs) != tc.reqs {
				t.Fatalf("%d model calls, want %d", len(m.reqs), tc.reqs)
			}
			echoes := 0
			for _, r := range m.reqs[len(m.reqs)-1:] {
				for _, msg := range r.Messages {
					if msg.Role == "tool" && msg.Content == "{}" {
						echoes++
					}
				}
			}
			if tc.err == "" && echoes != tc.echoes {
				t.Errorf("echo ran %d times, want %d", echoes, tc.echoes)
			}
			for i, r := range m.reqs {
				warned, wrap := hasMessage(r, "model turns remain"), hasMessage(r, "Do not call any more tools")
				if warned != (tc.warnAt > 0 && i+1 >= tc.warnAt) {
					t.Errorf("request %d: warned %v", i+1, warned)
				}
				if wrap != (tc.wrapAt > 0 && i+1 >= tc.wrapAt) {
					t.Errorf("request %d: wrap-up %v", i+1, wrap)
				}
			}
			if tc.answers != "" && !hasEntry(uiLog(t, s), "agent", tc.answers) {
				t.Errorf("final answer missing")
			}
		})
	}
}

// TestMaxCyclesCountAcrossTurns: the count is kept in the checkpoint, so
// a chat's next message continues it (as GitLab keeps it in the flow
// state): after the limit the agent is asked for its answer at once.
func TestMaxCyclesCountAcrossTurns(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	api.Workflow("5").Privileges = []string{flowtools.ReadOnlyGitLab}
	m := &scriptedModel{results: []model.Result{{Text: "Hello."}, {Text: "Still here."}}}
	e, _ := New(Options{Model: m, Tools: testTools})
	d := &Defined{Engine: e, Config: chatFlow(t, "chat", "max_cycles: 2")}
	for i, goal := range []string{"hi", "and now?"} {
		s := newSession(t, api, "")
		s.start.Goal = goal
		if out, err := d.Run(context.Background(), s); err != nil || out != flow.InputRequired {
			t.Fatalf("turn %d: %v %v", i, out, err)
		}
	}
	if len(m.reqs) != 2 || hasMessage(m.reqs[0], "Do not call any more tools") || !hasMessage(m.reqs[1], "Do not call any more tools") {
		t.Fatalf("requests %+v", m.reqs)
	}
}
