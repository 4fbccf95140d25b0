package flowengine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// FinalResponseTool is the synthetic tool an AgentComponent ends with.
const FinalResponseTool = "final_response_tool"

var finalResponseSpec = model.Tool{Type: "function", Function: model.ToolFunction{
	Name:        FinalResponseTool,
	Description: "Call this exactly once when your work for this step is complete, with your final answer.",
	Parameters:  flowtools.Schema([]string{"final_response"}, [3]string{"final_response", "string", "Your final answer for this step."}),
}}

// answerTokens is the completion budget of one model call.
const answerTokens = 4096

// conversation is one component's model history.
type conversation struct {
	component string
	msgs      []model.Message
}

func (r *run) start(c *flowconfig.Component) (*conversation, error) {
	in, err := r.inputs(c)
	if err != nil {
		return nil, err
	}
	p := c.Prompt
	if p == nil {
		return nil, &StepError{Component: c.Name, Reason: "no prompt"}
	}
	conv := &conversation{}
	if sys := render(p.System, in); strings.TrimSpace(sys) != "" {
		conv.msgs = append(conv.msgs, model.Message{Role: "system", Content: sys})
	}
	user := render(p.User, in)
	if strings.TrimSpace(user) == "" {
		user = inputsText(in)
	}
	// The first messages are never trimmed away, so a large input (a big
	// merge request's context) is cut to what the model's window holds.
	room := r.promptRoom()
	for _, m := range conv.msgs {
		room -= len(m.Content)
	}
	if room = max(room, 1024); len(user) > room {
		user = flowtools.Truncate(user, room)
	}
	conv.msgs = append(conv.msgs, model.Message{Role: "user", Content: user})
	return conv, nil
}

// promptRoom is how many bytes the first prompt may take: the model's
// window less the answer, the tool specs and room for a few tool rounds.
func (r *run) promptRoom() int {
	window := r.s.Caller().Model.ContextWindow
	if window <= 0 {
		window = 8192
	}
	return max((window-answerTokens-2000)*bytesPerToken*2/3, 2048)
}

// inputsText lists inputs for a prompt without a user template.
func inputsText(in map[string]string) string {
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "<%s>\n%s\n</%s>\n", n, in[n], n)
	}
	return b.String()
}

// ask makes one model call within the budgets.
func (r *run) ask(ctx context.Context, c *flowconfig.Component, conv *conversation, tools []model.Tool, choice any) (model.Result, error) {
	caller := r.s.Caller()
	if caller.BillingEnabled {
		resp, err := r.s.Do(ctx, &contract.Action{Action: &contract.Action_TrackLlmCallForSelfHosted{TrackLlmCallForSelfHosted: &contract.TrackLlmCallForSelfHosted{
			WorkflowID: r.w.ID, FeatureQualifiedName: r.feature,
		}}})
		if err != nil {
			return model.Result{}, err
		}
		if e := resp.GetPlainTextResponse().GetError(); e != "" {
			return model.Result{}, &StepError{Component: c.Name, Reason: "GitLab refused the model call (billing)", Detail: bound(e, 200)}
		}
	}
	req := model.ChatRequest{
		Model: caller.Model.ID, Messages: trim(conv.msgs, tools, caller.Model.ContextWindow),
		MaxTokens: answerTokens, Tools: tools, Temperature: new(float64), ToolChoice: choice,
	}
	res, err := r.e.o.Model.ChatStream(ctx, req, func(string) error { return nil })
	if r.e.o.ModelCalls != nil {
		r.e.o.ModelCalls(res.Usage, err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		var me *model.Error
		if errors.As(err, &me) {
			return res, &StepError{Component: c.Name, Reason: fmt.Sprintf("the model call failed: %d %s", me.Status, bound(me.Message, 200))}
		}
		return res, &StepError{Component: c.Name, Reason: "the confidential model service is unreachable"}
	}
	used := res.Usage.PromptTokens + res.Usage.CompletionTokens
	if used == 0 {
		used = estimate(req.Messages) + len(res.Text)/bytesPerToken
	}
	if err := r.chargeTokens(used); err != nil {
		return res, err
	}
	return res, nil
}

// toolChoice forces a tool call where the model supports it.
func (r *run) toolChoice(name string) any {
	if !r.e.o.ForceToolChoice {
		return "auto"
	}
	if name != "" {
		return map[string]any{"type": "function", "function": map[string]any{"name": name}}
	}
	return "required"
}

// agent runs an AgentComponent: the model calls tools until it calls
// final_response_tool (a plain-text answer also counts, for models that
// ignore the protocol). With require_tool_approval a call that needs the
// person's approval parks the step; the next session continues it there.
// max_cycles (within the engine's own step budget) bounds its model
// cycles: near the limit the model is warned, at it told to answer.
func (r *run) agent(ctx context.Context, c *flowconfig.Component) error {
	conv, err := r.conversationFor(c)
	if err != nil {
		return err
	}
	tools, dropped := r.e.o.Tools.Select(c.Toolset, r.privileges())
	if mcp := r.mcpTools(dropped); len(mcp) > 0 {
		tools = append(tools, mcp...)
		dropped = slices.DeleteFunc(dropped, func(n string) bool {
			return slices.ContainsFunc(mcp, func(t *flowtools.Tool) bool { return t.Name == n })
		})
	}
	if len(dropped) > 0 {
		r.e.o.Logger.Debug("flow: tools dropped", "workflow_id", r.w.ID, "component", c.Name, "tools", dropped)
	}
	byName := map[string]*flowtools.Tool{}
	specs := make([]model.Tool, 0, len(tools)+1)
	for _, t := range tools {
		byName[t.Name] = t
		specs = append(specs, t.ModelTool())
	}
	specs = append(specs, finalResponseSpec)
	// Calls left from before a pause run first.
	if done, err := r.runCalls(ctx, c, conv, byName); done || err != nil {
		return err
	}
	for steps := 0; ; steps++ {
		if r.cycleLimitReached(c) {
			return r.wrapUp(ctx, c, conv, specs)
		}
		if steps >= r.e.o.Budget.MaxStepsPerComponent {
			return &BudgetError{Budget: "model steps of component " + c.Name, Limit: fmt.Sprint(r.e.o.Budget.MaxStepsPerComponent)}
		}
		r.countCycle(c, conv)
		res, err := r.ask(ctx, c, conv, specs, r.toolChoice(""))
		if err != nil {
			return err
		}
		if len(res.ToolCalls) == 0 {
			if strings.TrimSpace(res.Text) != "" {
				conv.msgs = append(conv.msgs, model.Message{Role: "assistant", Content: res.Text})
				return r.finalAnswer(c, res.Text)
			}
			conv.msgs = append(conv.msgs, model.Message{Role: "user", Content: "Call a tool, or " + FinalResponseTool + " when you are done."})
			continue
		}
		res.ToolCalls = humanloop.BoundCalls(res.ToolCalls)
		conv.msgs = append(conv.msgs, model.Message{Role: "assistant", Content: res.Text, ToolCalls: res.ToolCalls})
		r.approvals.Wait(res.ToolCalls)
		if done, err := r.runCalls(ctx, c, conv, byName); done || err != nil {
			return err
		}
	}
}

// runCalls runs the pending calls of the last model answer in order (the
// first one approved when the person just approved it). done reports that
// the step ended with a final answer; errWaitApproval that a call waits.
func (r *run) runCalls(ctx context.Context, c *flowconfig.Component, conv *conversation, byName map[string]*flowtools.Tool) (done bool, err error) {
	approved := r.approved
	r.approved = false
	for ; len(r.approvals.Pending) > 0; approved = false {
		call := r.approvals.Pending[0]
		if call.Function.Name == FinalResponseTool {
			args, err := flowtools.ParseArgs(call.Function.Arguments)
			if err == nil {
				if answer, _ := flowtools.String(args, "final_response", true); answer != "" {
					// Every call gets a result, so the history stays valid
					// when the person's next message continues it.
					conv.msgs = append(conv.msgs, model.Message{Role: "tool", ToolCallID: call.ID, Content: "Your answer was delivered."})
					for _, rest := range r.approvals.Pending[1:] {
						conv.msgs = append(conv.msgs, model.Message{Role: "tool", ToolCallID: rest.ID, Content: "Not run: the step ended with your answer."})
					}
					r.approvals.Pending = nil
					return true, r.finalAnswer(c, answer)
				}
			}
			conv.msgs = append(conv.msgs, model.Message{Role: "tool", ToolCallID: call.ID, Content: "Error: final_response must be a non-empty string."})
			r.approvals.Pending = r.approvals.Pending[1:]
			continue
		}
		if t := byName[call.Function.Name]; t != nil && !approved && r.mustAsk(c, t) {
			if args, perr := flowtools.ParseArgs(call.Function.Arguments); perr == nil {
				return false, r.askApproval(t, args, call)
			}
		}
		out, err := r.agentCall(ctx, c, byName, call)
		if err != nil {
			return false, err
		}
		conv.msgs = append(conv.msgs, model.Message{Role: "tool", ToolCallID: call.ID, Content: out})
		r.approvals.Pending = r.approvals.Pending[1:]
	}
	return false, nil
}

func (r *run) agentCall(ctx context.Context, c *flowconfig.Component, byName map[string]*flowtools.Tool, call model.ToolCall) (string, error) {
	t := byName[call.Function.Name]
	if t == nil {
		if err := r.chargeToolCall(); err != nil {
			return "", err
		}
		return fmt.Sprintf("Error: there is no tool named %q in this step.", bound(call.Function.Name, 64)), nil
	}
	args, err := flowtools.ParseArgs(call.Function.Arguments)
	if err != nil {
		if err := r.chargeToolCall(); err != nil {
			return "", err
		}
		return "Error: " + err.Error(), nil
	}
	out, ok, err := r.callTool(ctx, c, t, args)
	if err != nil {
		return "", err
	}
	if ok {
		r.appendValue(c.Name+".tool_responses", out)
	}
	return out, nil
}

func (r *run) appendValue(key, v string) {
	cur := r.values[key]
	if cur != "" {
		cur += "\n"
	}
	r.values[key] = bound(cur+v, maxValueBytes)
}

func (r *run) finalAnswer(c *flowconfig.Component, answer string) error {
	answer = strings.TrimSpace(answer)
	r.values[c.Name+".final_answer"] = bound(answer, maxValueBytes)
	if containsEvent(c, flowconfig.EventAgentFinalAnswer) {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "agent", Content: bound(answer, 16<<10), Status: ptr("success")})
	}
	return nil
}

func containsEvent(c *flowconfig.Component, e string) bool {
	for _, x := range c.UILogEvents {
		if x == e {
			return true
		}
	}
	return false
}

// oneOff runs a OneOffComponent: one forced call of its tool; a failed
// call goes back to the model, which may correct it up to
// MaxCorrectionAttempts times. It never asks for approval (GitLab's
// OneOffComponent has no require_tool_approval); a call an earlier
// version paused for approval runs when approved, and a rejection went
// back to the model like a failed call.
func (r *run) oneOff(ctx context.Context, c *flowconfig.Component) error {
	conv, err := r.conversationFor(c)
	if err != nil {
		return err
	}
	t := r.tool(c.ToolName)
	if t == nil {
		return &StepError{Component: c.Name, Reason: "tool " + c.ToolName + " is not available (unknown or not permitted by the workflow's privileges)"}
	}
	specs := []model.Tool{t.ModelTool()}
	last := "the model did not call " + c.ToolName
	if w := r.approvals.Waiting(); w != nil {
		done, text, err := r.oneOffCall(ctx, c, t, conv, *w)
		if done || err != nil {
			return err
		}
		last = text
	}
	for attempt := 0; attempt <= c.MaxCorrectionAttempts; attempt++ {
		res, err := r.ask(ctx, c, conv, specs, r.toolChoice(c.ToolName))
		if err != nil {
			return err
		}
		var call *model.ToolCall
		for i := range res.ToolCalls {
			if res.ToolCalls[i].Function.Name == c.ToolName {
				call = &res.ToolCalls[i]
				break
			}
		}
		if call == nil {
			conv.msgs = append(conv.msgs, model.Message{Role: "assistant", Content: res.Text},
				model.Message{Role: "user", Content: "You must call the tool " + c.ToolName + " now."})
			continue
		}
		conv.msgs = append(conv.msgs, model.Message{Role: "assistant", Content: res.Text, ToolCalls: []model.ToolCall{*call}})
		done, text, err := r.oneOffCall(ctx, c, t, conv, *call)
		if done || err != nil {
			return err
		}
		last = text
	}
	return &StepError{Component: c.Name, Reason: fmt.Sprintf("%s failed after %d correction attempts", c.ToolName, c.MaxCorrectionAttempts), Detail: bound(last, 300)}
}

// oneOffCall runs the one-off step's call. done reports success; else
// text is the failure the model was told to correct.
func (r *run) oneOffCall(ctx context.Context, c *flowconfig.Component, t *flowtools.Tool, conv *conversation, call model.ToolCall) (done bool, text string, err error) {
	r.approvals.Pending = nil
	args, perr := flowtools.ParseArgs(call.Function.Arguments)
	var out string
	ok := false
	switch {
	case perr != nil:
		if err := r.chargeToolCall(); err != nil {
			return false, "", err
		}
		out = "Error: " + perr.Error()
	default:
		if out, ok, err = r.callTool(ctx, c, t, args); err != nil {
			return false, "", err
		}
	}
	if ok {
		r.values[c.Name+".tool_responses"] = out
		r.values[c.Name+".final_answer"] = out
		return true, "", nil
	}
	conv.msgs = append(conv.msgs, model.Message{Role: "tool", ToolCallID: call.ID, Content: out + "\nCorrect the call and try again."})
	return false, strings.TrimPrefix(out, "Error: "), nil
}

// Token estimates: no tokenizer for every model, so count conservatively.
const (
	bytesPerToken = 3
	perMessage    = 8
)

func estimate(msgs []model.Message) int {
	n := 0
	for _, m := range msgs {
		n += len(m.Content)/bytesPerToken + perMessage
		for _, c := range m.ToolCalls {
			n += (len(c.Function.Name) + len(c.Function.Arguments)) / bytesPerToken
		}
	}
	return n
}

// trim keeps the system and first user message and as many of the newest
// messages as fit the model's window; it never starts the kept tail with
// a tool result whose call was dropped.
func trim(msgs []model.Message, tools []model.Tool, window int) []model.Message {
	if window <= 0 {
		window = 8192
	}
	toolTokens := 200
	for _, t := range tools {
		toolTokens += (len(t.Function.Name) + len(t.Function.Description)) / bytesPerToken * 2
	}
	budget := window - answerTokens - toolTokens
	head := 0
	for head < len(msgs) && head < 2 && (msgs[head].Role == "system" || msgs[head].Role == "user") {
		head++
	}
	used := estimate(msgs[:head])
	if used >= budget || head == len(msgs) {
		return msgs
	}
	start := len(msgs)
	for start > head {
		c := estimate(msgs[start-1 : start])
		if used+c > budget {
			break
		}
		used += c
		start--
	}
	for start < len(msgs) && msgs[start].Role == "tool" {
		start++
	}
	if start == head {
		return msgs
	}
	out := append([]model.Message{}, msgs[:head]...)
	if start > head {
		out = append(out, model.Message{Role: "user", Content: "(Earlier steps were left out to fit the context window.)"})
	}
	return append(out, msgs[start:]...)
}
