package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// Model streams one chat completion (gateway/model's Client).
type Model interface {
	ChatStream(ctx context.Context, r model.ChatRequest, onDelta func(text string) error) (model.Result, error)
}

// Options configures the agent.
type Options struct {
	// Model is the only way to a model: the attesting proxy's client.
	Model Model
	// MaxToolRounds bounds model ↔ tool rounds per message (default 12).
	MaxToolRounds int
	// StreamInterval is the least time between streamed UI updates
	// (default 100 ms).
	StreamInterval time.Duration
	// Logger gets metadata only (tool names, counts), never content.
	Logger *slog.Logger
	// ModelCalls, if set, is told about every model call: its token usage
	// and whether it failed (for metrics).
	ModelCalls func(usage model.Usage, err error)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Agent is the Agentic Chat flow.
type Agent struct{ o Options }

// New returns the agent.
func New(o Options) (*Agent, error) {
	if o.Model == nil {
		return nil, errors.New("chat: Options.Model is required")
	}
	if o.MaxToolRounds <= 0 {
		o.MaxToolRounds = 12
	}
	if o.StreamInterval <= 0 {
		o.StreamInterval = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Agent{o: o}, nil
}

// Tools implements flow.Flow.
func (a *Agent) Tools() []map[string]any { return Tools() }

// FeatureQualifiedName is what the billing event names this feature:
// GitLab's service uses the workflow definition ("chat", or "<flow>/v1").
const FeatureQualifiedName = "chat"

// compressFlag is the feature flag with which Rails asks for compressed
// checkpoints.
const compressFlag = "duo_workflow_compress_checkpoint"

// maxCheckpointBytes keeps a persisted checkpoint well inside the 4 MiB
// action limit.
const maxCheckpointBytes = 3 << 20

var errCheckpointState = errors.New("the workflow's last checkpoint is not this service's state")

// run is one session of the agent.
type run struct {
	a        *Agent
	s        flow.Session
	gl       *gitlabapi.Client
	w        *gitlabapi.Workflow
	st       *state
	ts       *toolset
	env      *flowtools.Env
	sentFrom int
	lastSent time.Time
}

// Run implements flow.Flow.
func (a *Agent) Run(ctx context.Context, s flow.Session) (flow.Outcome, error) {
	start := s.Start()
	gl := gitlabapi.New(s)
	w, err := gl.Workflow(ctx, start.GetWorkflowID(), s.Caller().GitLabVersion)
	if err != nil {
		return "", err
	}
	st, err := stateFrom(w.Checkpoint, a.o.Now)
	if err != nil {
		return "", err
	}
	// A decision about another tool than the one waiting is refused before
	// anything changes in GitLab.
	if err := st.conv.CheckDecision(start); err != nil {
		return "", err
	}
	r := &run{a: a, s: s, gl: gl, w: w, st: st, ts: newToolset(w, start, s.Caller().ClientType)}
	r.env = &flowtools.Env{GitLab: gl, Session: s, Workflow: w}
	r.sentFrom = len(st.log)
	enter := humanloop.EnterEvent(w.StatusName)
	if err := gl.StatusEvent(ctx, w.ID, enter); err != nil {
		return "", err
	}
	if st.goal == "" {
		st.goal = start.GetGoal()
	}
	st.status = humanloop.StatusRunning
	if enter == gitlabapi.EventResume {
		if out, done, err := r.applyHumanEvents(ctx); done || err != nil {
			return out, err
		}
	}

	d := st.conv.Decide(start)
	st.conv.Messages = append(st.conv.Messages, d.Results...)
	if d.Note != "" {
		st.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: d.Note, Status: ptr("success")})
	}
	if start.GetApproval() == nil && start.GetGoal() != "" {
		st.addLog(gitlabapi.UIChatLogEntry{MessageType: "user", Content: start.GetGoal(), Status: ptr("success")})
		st.conv.Messages = append(st.conv.Messages, model.Message{Role: "user", Content: start.GetGoal() + contextText(start.GetAdditionalContext())})
	}
	if err := r.notify(ctx, true); err != nil {
		return "", err
	}
	if out, done, err := r.runPending(ctx, d.Approved); done || err != nil {
		return out, err
	}
	for range a.o.MaxToolRounds {
		if out, done, err := r.turn(ctx); done || err != nil {
			return out, err
		}
	}
	st.addLog(gitlabapi.UIChatLogEntry{MessageType: "agent", Content: fmt.Sprintf("I stopped after %d rounds of tool calls. Tell me how to continue.", a.o.MaxToolRounds), Status: ptr("success")})
	return r.finishOutcome(ctx, humanloop.StatusInputRequired, gitlabapi.EventRequireInput, flow.InputRequired)
}

// turn is one model call and the tools it asks for. done reports that the
// session should end with out.
func (r *run) turn(ctx context.Context) (out flow.Outcome, done bool, err error) {
	caller := r.s.Caller()
	if caller.BillingEnabled {
		if err := r.trackLLMCall(ctx); err != nil {
			return "", true, err
		}
	}
	tools := r.ts.modelTools()
	system := systemPrompt(r.w, r.a.o.Now())
	req := model.ChatRequest{
		Model: caller.Model.ID, Messages: trimHistory(system, r.st.conv.Messages, tools, caller.Model.ContextWindow),
		MaxTokens: answerTokens, Tools: tools, Temperature: new(float64),
	}
	if len(tools) > 0 {
		req.ToolChoice = "auto"
	}
	idx := r.st.addLog(gitlabapi.UIChatLogEntry{MessageType: "agent", Status: ptr("success")})
	res, err := r.a.o.Model.ChatStream(ctx, req, func(d string) error {
		r.st.log[idx].Content += d
		return r.notify(ctx, false)
	})
	if r.a.o.ModelCalls != nil {
		r.a.o.ModelCalls(res.Usage, err)
	}
	r.a.o.Logger.Debug("chat: model answered", "workflow_id", r.w.ID, "tool_calls", len(res.ToolCalls), "finish", res.FinishReason,
		"prompt_tokens", res.Usage.PromptTokens, "completion_tokens", res.Usage.CompletionTokens)
	if err != nil {
		if ctx.Err() != nil {
			return "", true, context.Cause(ctx)
		}
		r.st.log[idx].Content = "The model could not answer: " + modelErrorText(err)
		r.st.log[idx].Status = ptr("failure")
		_, _, ferr := r.finish(ctx, humanloop.StatusFailed, gitlabapi.EventDrop, "")
		if ferr != nil {
			return "", true, ferr
		}
		return "", true, fmt.Errorf("model call failed: %s", modelErrorText(err))
	}
	if res.Text == "" {
		r.st.log = slices.Delete(r.st.log, idx, idx+1)
		if r.sentFrom > len(r.st.log) {
			r.sentFrom = len(r.st.log)
		}
	}
	res.ToolCalls = humanloop.BoundCalls(res.ToolCalls)
	r.st.conv.Messages = append(r.st.conv.Messages, model.Message{Role: "assistant", Content: res.Text, ToolCalls: res.ToolCalls})
	if len(res.ToolCalls) == 0 {
		out, err := r.finishOutcome(ctx, humanloop.StatusInputRequired, gitlabapi.EventRequireInput, flow.InputRequired)
		return out, true, err
	}
	r.st.conv.Wait(res.ToolCalls)
	if out, done, err := r.runPending(ctx, false); done || err != nil {
		return out, done, err
	}
	return "", false, r.persist(ctx)
}

func modelErrorText(err error) string {
	var me *model.Error
	if errors.As(err, &me) {
		return fmt.Sprintf("%d %s", me.Status, me.Message)
	}
	return "the confidential model service is unreachable"
}

// runPending runs the pending tool calls in order; a write tool without
// approval stops the session with TOOL_CALL_APPROVAL_REQUIRED.
func (r *run) runPending(ctx context.Context, approvedFirst bool) (flow.Outcome, bool, error) {
	for len(r.st.conv.Pending) > 0 {
		call := r.st.conv.Pending[0]
		t := r.ts.byName[call.Function.Name]
		args, argErr := flowtools.ParseArgs(call.Function.Arguments)
		if t != nil && argErr == nil && !approvedFirst && !r.ts.preApproved(t) && !r.st.conv.Remembers(t.Name) {
			r.st.addLog(humanloop.Request(t.Name, args, call.ID))
			out, err := r.finishOutcome(ctx, humanloop.StatusApprovalRequired, gitlabapi.EventRequireToolCallApproval, flow.ToolApprovalRequired)
			return out, true, err
		}
		approvedFirst = false
		result, err := r.runTool(ctx, t, call, args, argErr)
		if err != nil {
			return "", true, err
		}
		r.st.conv.Messages = append(r.st.conv.Messages, model.Message{Role: "tool", ToolCallID: call.ID, Content: result})
		r.st.conv.Pending = r.st.conv.Pending[1:]
	}
	return "", false, nil
}

// runTool runs one call and returns what the model sees. Only session
// failures are errors; tool failures become the result text.
func (r *run) runTool(ctx context.Context, t *flowtools.Tool, call model.ToolCall, args map[string]any, argErr error) (string, error) {
	if t == nil {
		return "Error: there is no tool named " + fmt.Sprintf("%q", call.Function.Name) + ".", nil
	}
	if argErr != nil {
		return "Error: " + argErr.Error(), nil
	}
	idx := r.st.addLog(gitlabapi.UIChatLogEntry{
		MessageType: "tool", MessageSubType: ptr(t.Name), Content: "Using " + t.Name,
		Status: ptr("pending"), ToolInfo: &gitlabapi.ToolInfo{Name: t.Name, Args: args}, CorrelationID: ptr(call.ID),
	})
	if err := r.notify(ctx, true); err != nil {
		return "", err
	}
	out, err := t.Run(ctx, r.env, args)
	r.a.o.Logger.Debug("chat: tool ran", "workflow_id", r.w.ID, "tool", t.Name, "ok", err == nil)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, flow.ErrActionTooLarge) || errors.Is(err, flow.ErrStopped) {
			return "", err
		}
		r.st.log[idx].Status = ptr("failure")
		r.st.log[idx].Content = "Failed: " + t.Name
		return "Error: " + err.Error(), nil
	}
	r.st.log[idx].Status = ptr("success")
	r.st.log[idx].ToolInfo.ToolResponse = out
	return out, nil
}

// finishOutcome persists the state with status, moves Rails' workflow with
// event and tells the client.
func (r *run) finishOutcome(ctx context.Context, status, event string, out flow.Outcome) (flow.Outcome, error) {
	o, _, err := r.finish(ctx, status, event, out)
	return o, err
}

func (r *run) finish(ctx context.Context, status, event string, out flow.Outcome) (flow.Outcome, bool, error) {
	r.st.status = status
	if err := r.persist(ctx); err != nil {
		return "", true, err
	}
	if err := r.gl.StatusEvent(ctx, r.w.ID, event); err != nil {
		return "", true, err
	}
	if err := r.notify(ctx, true); err != nil {
		return "", true, err
	}
	return out, true, nil
}

// persist saves a checkpoint, dropping the oldest history when it would
// not fit the action limit.
func (r *run) persist(ctx context.Context) error {
	for range 8 {
		cp, err := r.st.checkpoint()
		if err != nil {
			return err
		}
		b, err := cp.Encode()
		if err != nil {
			return err
		}
		if len(b) <= maxCheckpointBytes {
			compress := slices.Contains(r.s.Caller().FeatureFlags, compressFlag)
			if err := r.gl.SaveCheckpoint(ctx, r.w.ID, cp, r.st.lastTS, compress); err != nil {
				return err
			}
			r.st.lastTS = cp.ID
			return nil
		}
		r.st.conv.Messages = r.st.conv.Messages[len(r.st.conv.Messages)/2:]
		if len(r.st.log) > 1 {
			r.st.log = r.st.log[len(r.st.log)/2:]
			r.sentFrom = 0
		}
	}
	return errors.New("the chat state does not fit a checkpoint")
}

// notify streams the chat log to the client: the whole log, or with
// incremental_streaming only the tail from the last entry already sent.
// Unforced updates are rate-limited.
func (r *run) notify(ctx context.Context, force bool) error {
	now := r.a.o.Now()
	if !force && now.Sub(r.lastSent) < r.a.o.StreamInterval {
		return nil
	}
	r.lastSent = now
	log := r.st.log
	if slices.Contains(r.s.Start().GetClientCapabilities(), "incremental_streaming") {
		from := r.sentFrom
		if from >= len(log) {
			from = max(len(log)-1, 0)
		}
		log = log[from:]
		r.sentFrom = max(len(r.st.log)-1, 0)
	}
	if log == nil {
		log = []gitlabapi.UIChatLogEntry{}
	}
	b, err := json.Marshal(map[string]any{"channel_values": map[string]any{"ui_chat_log": log, "plan": gitlabapi.Plan{Steps: []gitlabapi.PlanStep{}}}})
	if err != nil {
		return err
	}
	return r.s.Notify(ctx, &contract.NewCheckpoint{Status: r.st.status, Checkpoint: string(b), Goal: r.st.goal})
}

// trackLLMCall is GitLab's per-call billing hook for online-licensed
// self-hosted instances: metadata only, and the call waits for Workhorse's
// acknowledgement.
func (r *run) trackLLMCall(ctx context.Context) error {
	resp, err := r.s.Do(ctx, &contract.Action{Action: &contract.Action_TrackLlmCallForSelfHosted{TrackLlmCallForSelfHosted: &contract.TrackLlmCallForSelfHosted{
		WorkflowID: r.w.ID, FeatureQualifiedName: FeatureQualifiedName,
	}}})
	if err != nil {
		return err
	}
	if e := resp.GetPlainTextResponse().GetError(); e != "" {
		return fmt.Errorf("GitLab refused the model call for billing: %s", boundResult(e))
	}
	return nil
}

// Bounds of the additional context a client attaches to a message.
const (
	maxContextItems     = 16
	maxContextItemBytes = 32 << 10
)

// contextText renders the client's additional context (open files,
// selections, issues) after the user's message, bounded.
func contextText(items []*contract.AdditionalContext) string {
	var b strings.Builder
	for i, c := range items {
		if i == maxContextItems {
			break
		}
		if c.GetContent() == "" {
			continue
		}
		content := c.GetContent()
		if len(content) > maxContextItemBytes {
			content = content[:maxContextItemBytes] + "\n[truncated]"
		}
		fmt.Fprintf(&b, "\n\n<additional_context category=%q id=%q>\n%s\n</additional_context>", bounded(c.GetCategory(), 64), bounded(c.GetId(), 256), content)
	}
	return b.String()
}

func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
