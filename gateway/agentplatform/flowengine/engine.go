package flowengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// Model streams one chat completion (gateway/model's Client, bound to the
// attesting proxy).
type Model interface {
	ChatStream(ctx context.Context, r model.ChatRequest, onDelta func(text string) error) (model.Result, error)
}

// Budget bounds one flow run; zero fields take the defaults.
type Budget struct {
	// MaxStepsPerComponent bounds model calls of one component run.
	MaxStepsPerComponent int
	// MaxToolCalls bounds tool calls of the whole flow.
	MaxToolCalls int
	// MaxTokens bounds prompt plus completion tokens of the whole flow.
	MaxTokens int
	// WallTime bounds the flow's running time.
	WallTime time.Duration
	// MaxComponentRuns bounds how often components run (routers may loop).
	MaxComponentRuns int
}

// DefaultBudget is what a flow gets unless configured otherwise.
var DefaultBudget = Budget{MaxStepsPerComponent: 25, MaxToolCalls: 100, MaxTokens: 2_000_000, WallTime: 25 * time.Minute, MaxComponentRuns: 32}

func (b Budget) withDefaults() Budget {
	d := DefaultBudget
	if b.MaxStepsPerComponent > 0 {
		d.MaxStepsPerComponent = b.MaxStepsPerComponent
	}
	if b.MaxToolCalls > 0 {
		d.MaxToolCalls = b.MaxToolCalls
	}
	if b.MaxTokens > 0 {
		d.MaxTokens = b.MaxTokens
	}
	if b.WallTime > 0 {
		d.WallTime = b.WallTime
	}
	if b.MaxComponentRuns > 0 {
		d.MaxComponentRuns = b.MaxComponentRuns
	}
	return d
}

// BudgetError says which budget a flow exceeded.
type BudgetError struct {
	Budget string
	Limit  string
}

// Error implements error.
func (e *BudgetError) Error() string {
	return fmt.Sprintf("budget exceeded: %s (%s)", e.Budget, e.Limit)
}

// StepError is a component that could not do its job (its tool failed,
// the model never produced a valid call). Reason is free of payload (it is
// logged and ends the RPC); Detail, which may quote a tool's error text,
// goes only to the workflow's UI log.
type StepError struct {
	Component string
	Reason    string
	Detail    string
}

// Error implements error.
func (e *StepError) Error() string {
	return fmt.Sprintf("component %s failed: %s", e.Component, e.Reason)
}

// uiText is the failure as the UI log shows it.
func uiText(err error) string {
	var se *StepError
	if errors.As(err, &se) && se.Detail != "" {
		return se.Error() + ": " + se.Detail
	}
	return err.Error()
}

// Options configures an Engine.
type Options struct {
	// Model is the only way to a model.
	Model Model
	// Tools is every tool flows may name.
	Tools flowtools.Catalogue
	// Budget bounds each run.
	Budget Budget
	// Logger gets metadata only (component and tool names, counts).
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// ModelCalls, if set, is told about every model call (metrics).
	ModelCalls func(usage model.Usage, err error)
	// ForceToolChoice sends tool_choice "required" (agents) or the named
	// function (one-off steps) instead of "auto"; only for backends that
	// support it (vLLM ≥ 0.8.3). With "auto" a model that answers in text
	// is asked again to call the tool.
	ForceToolChoice bool
}

// Engine runs flows.
type Engine struct{ o Options }

// New returns an engine.
func New(o Options) (*Engine, error) {
	if o.Model == nil {
		return nil, errors.New("flowengine: Options.Model is required")
	}
	if o.Tools == nil {
		o.Tools = flowtools.Catalogue{}
	}
	o.Budget = o.Budget.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Engine{o: o}, nil
}

// Tools lists the engine's catalogue (ListTools).
func (e *Engine) Tools() flowtools.Catalogue { return e.o.Tools }

// Run executes cfg on the session until it reaches end, fails or exceeds a
// budget. A failure is persisted (status FAILED, reason in the UI log,
// Rails event drop) and returned as an error without payload text.
func (e *Engine) Run(ctx context.Context, s flow.Session, cfg *flowconfig.Config, feature string) (flow.Outcome, error) {
	gl := gitlabapi.New(s)
	start := s.Start()
	w, err := gl.Workflow(ctx, start.GetWorkflowID(), s.Caller().GitLabVersion)
	if err != nil {
		return "", err
	}
	r := newRun(e, s, gl, w, cfg, feature)
	if r.holdsState() {
		// A decision about another tool than the one waiting is refused
		// before anything changes in GitLab.
		if err := r.approvals.CheckDecision(start); err != nil {
			return "", err
		}
	}
	enter := humanloop.EnterEvent(w.StatusName)
	if err := gl.StatusEvent(ctx, w.ID, enter); err != nil {
		return "", err
	}
	if r.holdsState() {
		if out, done, err := r.takeTurn(ctx, enter); done || err != nil {
			return out, err
		}
	}
	runCtx, cancel := context.WithTimeoutCause(ctx, e.o.Budget.WallTime, &BudgetError{Budget: "wall time", Limit: e.o.Budget.WallTime.String()})
	defer cancel()
	err = r.walk(runCtx)
	switch {
	case err == nil && r.interactive():
		// A chat flow's turn is over: wait for the person's next message.
		return r.park(ctx, humanloop.StatusInputRequired, gitlabapi.EventRequireInput, flow.InputRequired, waitInput)
	case err == nil:
		return r.end(ctx, statusFinished, gitlabapi.EventFinish, "")
	case errors.Is(err, errWaitApproval):
		if w := r.approvals.Waiting(); w != nil {
			e.o.Logger.Info("flow: waiting for tool approval", "workflow_id", r.w.ID, "flow", cfg.Name, "component", r.next, "tool", bound(w.Function.Name, 64))
		}
		return r.park(ctx, humanloop.StatusApprovalRequired, gitlabapi.EventRequireToolCallApproval, flow.ToolApprovalRequired, waitApproval)
	}
	if c := context.Cause(runCtx); ctx.Err() == nil && c != nil {
		err = c
	}
	var be *BudgetError
	var se *StepError
	if errors.As(err, &be) || errors.As(err, &se) {
		e.o.Logger.Info("flow: failed", "workflow_id", w.ID, "flow", cfg.Name, "reason", err.Error())
		if _, ferr := r.end(ctx, statusFailed, gitlabapi.EventDrop, uiText(err)); ferr != nil {
			return "", ferr
		}
		return "", err
	}
	return "", err
}
