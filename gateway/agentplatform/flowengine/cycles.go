package flowengine

import (
	"context"
	"fmt"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// maxWrapUpRetries is how often a component at its max_cycles may ignore
// the instruction to answer before the step fails (GitLab's
// max_wrap_up_retries default).
const maxWrapUpRetries = 3

// cycleLimitReached reports whether agent component c has used the model
// cycles its max_cycles allows. The engine's own MaxStepsPerComponent
// stays the ceiling per session; max_cycles counts across sessions, as
// GitLab keeps the count in the flow's state.
func (r *run) cycleLimitReached(c *flowconfig.Component) bool {
	return c.MaxCycles != nil && r.cycles[c.Name] >= c.MaxCycles.Threshold-1
}

// countCycle counts one model cycle of c and, WarningOffset cycles before
// its max_cycles, tells the model the limit is near.
func (r *run) countCycle(c *flowconfig.Component, conv *conversation) {
	mc := c.MaxCycles
	if mc == nil {
		return
	}
	r.cycles[c.Name]++
	if n := r.cycles[c.Name]; mc.WarningOffset != nil && n == mc.Threshold-*mc.WarningOffset {
		conv.msgs = append(conv.msgs, model.Message{Role: "user", Content: fmt.Sprintf(
			"Note: %d model turns remain for this step. After that you can no longer call tools and must give your final answer with %s, so start concluding your work.",
			mc.Threshold-n, FinalResponseTool)})
	}
}

// wrapUp is c's last cycle under max_cycles: the model is told to answer
// now; tool calls other than final_response_tool are answered, not run,
// and the instruction repeated, up to maxWrapUpRetries times before the
// step fails.
func (r *run) wrapUp(ctx context.Context, c *flowconfig.Component, conv *conversation, specs []model.Tool) error {
	r.cycles[c.Name]++
	const instruction = "You have reached the limit of model turns for this step. Do not call any more tools: give your final answer now with " + FinalResponseTool + "."
	for range maxWrapUpRetries {
		conv.msgs = append(conv.msgs, model.Message{Role: "user", Content: instruction})
		res, err := r.ask(ctx, c, conv, specs, r.toolChoice(FinalResponseTool))
		if err != nil {
			return err
		}
		res.ToolCalls = humanloop.BoundCalls(res.ToolCalls)
		if len(res.ToolCalls) == 0 {
			if strings.TrimSpace(res.Text) != "" {
				conv.msgs = append(conv.msgs, model.Message{Role: "assistant", Content: res.Text})
				return r.finalAnswer(c, res.Text)
			}
			continue
		}
		conv.msgs = append(conv.msgs, model.Message{Role: "assistant", Content: res.Text, ToolCalls: res.ToolCalls})
		answer := ""
		for _, call := range res.ToolCalls {
			text := "Not run: this step has reached its limit of model turns."
			if call.Function.Name == FinalResponseTool && answer == "" {
				if args, err := flowtools.ParseArgs(call.Function.Arguments); err == nil {
					if answer, _ = flowtools.String(args, "final_response", true); answer != "" {
						text = "Your answer was delivered."
					}
				}
			}
			conv.msgs = append(conv.msgs, model.Message{Role: "tool", ToolCallID: call.ID, Content: text})
		}
		if answer != "" {
			return r.finalAnswer(c, answer)
		}
	}
	return &BudgetError{Budget: "max_cycles of component " + c.Name + " (the model kept calling tools after the limit)", Limit: fmt.Sprint(c.MaxCycles.Threshold)}
}
