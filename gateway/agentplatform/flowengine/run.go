package flowengine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/humanloop"
	"github.com/google/uuid"
)

// UI statuses (newCheckpoint and persisted checkpoints).
const (
	statusRunning  = humanloop.StatusRunning
	statusFinished = humanloop.StatusFinished
	statusFailed   = humanloop.StatusFailed
)

// compressFlag is the feature flag with which Rails asks for compressed
// checkpoints.
const compressFlag = "duo_workflow_compress_checkpoint"

// maxValueBytes bounds one context value (a final answer, tool responses).
const maxValueBytes = 256 << 10

// maxLogEntries bounds the UI log of one run.
const maxLogEntries = 400

// run is one execution of a flow.
type run struct {
	e         *Engine
	s         flow.Session
	gl        *gitlabapi.Client
	w         *gitlabapi.Workflow
	cfg       *flowconfig.Config
	env       *flowtools.Env
	feature   string
	values    map[string]string
	log       []gitlabapi.UIChatLogEntry
	status    string
	goal      string
	lastTS    string
	toolCalls int
	tokens    int
	// next is the component to run next (flowconfig.End when done); it is
	// persisted so a retry continues there.
	next string
	// resumed: the state came from the workflow's last checkpoint.
	resumed bool

	// Interactive flows (persisted): what the flow waits for, the last
	// agent or one-off step's history, and the approval state.
	waiting   string
	conv      *conversation
	approvals humanloop.Approvals
	// This session's input (not persisted): cont makes the first step
	// continue conv; decided says the person decided on a waiting call,
	// approved that they approved it.
	cont, decided, approved bool
	// cycles counts model cycles of agent components with max_cycles
	// (persisted).
	cycles map[string]int
}

func newRun(e *Engine, s flow.Session, gl *gitlabapi.Client, w *gitlabapi.Workflow, cfg *flowconfig.Config, feature string) *run {
	start := s.Start()
	r := &run{
		e: e, s: s, gl: gl, w: w, cfg: cfg, feature: feature, status: statusRunning, goal: start.GetGoal(),
		env:    &flowtools.Env{Session: s, GitLab: gl, Workflow: w},
		values: map[string]string{}, cycles: map[string]int{},
	}
	r.next = cfg.Flow.EntryPoint
	if w.Checkpoint != nil {
		r.lastTS = w.Checkpoint.ID
	}
	v := r.values
	v["goal"] = start.GetGoal()
	v["project_id"] = w.ProjectID
	v["project_name"] = w.ProjectName
	v["project_web_url"] = w.ProjectWebURL
	v["project_http_url_to_repo"] = w.ProjectHTTPURLToRepo
	v["namespace_id"] = w.NamespaceID
	v["workflow_id"] = w.ID
	v["current_date"] = e.o.Now().UTC().Format("2006-01-02")
	if w.ProjectWebURL != "" {
		v["session_url"] = w.ProjectWebURL + "/-/automate/agent-sessions/" + w.ID
	}
	for i, ac := range start.GetAdditionalContext() {
		if i >= 64 || ac.GetCategory() == "" {
			break
		}
		key := "inputs." + ac.GetCategory()
		content := bound(ac.GetContent(), maxValueBytes)
		v[key] = content
		var fields map[string]any
		if json.Unmarshal([]byte(content), &fields) == nil {
			for name, val := range fields {
				v[key+"."+name] = valueText(val)
			}
		}
	}
	if b := v["inputs.agent_platform_standard_context.primary_branch"]; b != "" {
		v["project_default_branch"] = b
	}
	if r.resumed = r.resume(); r.resumed {
		e.o.Logger.Info("flow: resuming", "workflow_id", w.ID, "flow", cfg.Name, "component", r.next)
	}
	return r
}

func valueText(v any) string {
	if s, ok := v.(string); ok {
		return bound(s, maxValueBytes)
	}
	b, _ := json.Marshal(v)
	return bound(string(b), maxValueBytes)
}

func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return flowtools.Truncate(s, n)
}

// lookup reads a context value.
func (r *run) lookup(path string) (string, bool) {
	v, ok := r.values[path]
	return v, ok
}

// walk runs components from r.next along the routers.
func (r *run) walk(ctx context.Context) error {
	name := r.next
	for runs := 0; name != flowconfig.End; runs++ {
		if runs >= r.e.o.Budget.MaxComponentRuns {
			return &BudgetError{Budget: "component runs", Limit: fmt.Sprint(r.e.o.Budget.MaxComponentRuns)}
		}
		c := r.cfg.Component(name)
		if c == nil {
			return &StepError{Component: name, Reason: "no such component"}
		}
		r.e.o.Logger.Debug("flow: component", "workflow_id", r.w.ID, "component", c.Name, "type", c.Type)
		var err error
		switch c.Type {
		case flowconfig.TypeDeterministic:
			err = r.deterministic(ctx, c)
		case flowconfig.TypeAgent:
			err = r.agent(ctx, c)
		case flowconfig.TypeOneOff:
			err = r.oneOff(ctx, c)
		default:
			err = &StepError{Component: c.Name, Reason: "unsupported type " + c.Type}
		}
		if err != nil {
			return err
		}
		// The person's input belongs to the first step only.
		r.cont, r.decided, r.approved = false, false, false
		next := r.cfg.Next(c.Name, r.lookup)
		if next == "" {
			return &StepError{Component: c.Name, Reason: "no route matches its answer"}
		}
		r.next, name = next, next
		if err := r.persist(ctx); err != nil {
			return err
		}
	}
	return nil
}

// inputs resolves a component's inputs by name.
func (r *run) inputs(c *flowconfig.Component) (map[string]string, error) {
	out := map[string]string{}
	for _, in := range c.Inputs {
		if in.Literal {
			out[in.As] = in.From
			continue
		}
		v, ok := r.values[in.From]
		if !ok && !in.Optional {
			return nil, &StepError{Component: c.Name, Reason: "input context:" + in.From + " has no value"}
		}
		out[in.As] = v
	}
	return out, nil
}

var placeholderRE = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// render fills {{ name }} placeholders; unknown names render empty.
func render(tmpl string, vars map[string]string) string {
	return placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		return vars[placeholderRE.FindStringSubmatch(m)[1]]
	})
}

func (r *run) chargeToolCall() error {
	r.toolCalls++
	if r.toolCalls > r.e.o.Budget.MaxToolCalls {
		return &BudgetError{Budget: "tool calls", Limit: fmt.Sprint(r.e.o.Budget.MaxToolCalls)}
	}
	return nil
}

func (r *run) chargeTokens(n int) error {
	r.tokens += n
	if r.tokens > r.e.o.Budget.MaxTokens {
		return &BudgetError{Budget: "tokens", Limit: fmt.Sprint(r.e.o.Budget.MaxTokens)}
	}
	return nil
}

// callTool runs one tool call for component c, logging the events c asks
// for. Tool failures come back as the error text for the model (ok
// false); only session failures are errors.
func (r *run) callTool(ctx context.Context, c *flowconfig.Component, t *flowtools.Tool, args map[string]any) (result string, ok bool, err error) {
	if err := r.chargeToolCall(); err != nil {
		return "", false, err
	}
	events := c.UILogEvents
	if slices.Contains(events, flowconfig.EventToolCallInput) {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "tool", MessageSubType: ptr(t.Name), Content: "Using " + t.Name,
			Status: ptr("pending"), ToolInfo: &gitlabapi.ToolInfo{Name: t.Name, Args: logArgs(args)}})
		if err := r.notify(ctx); err != nil {
			return "", false, err
		}
	}
	out, terr := t.Run(ctx, r.env, args)
	r.e.o.Logger.Debug("flow: tool ran", "workflow_id", r.w.ID, "component", c.Name, "tool", t.Name, "ok", terr == nil)
	if terr != nil {
		if flowtools.IsSessionError(ctx, terr) {
			return "", false, terr
		}
		r.toolLog(c, t, args, terr.Error(), false)
		return "Error: " + terr.Error(), false, nil
	}
	out = flowtools.Truncate(out, flowtools.MaxResultBytes)
	r.toolLog(c, t, args, out, true)
	return out, true, nil
}

func (r *run) toolLog(c *flowconfig.Component, t *flowtools.Tool, args map[string]any, text string, ok bool) {
	if ok && slices.Contains(c.UILogEvents, flowconfig.EventToolExecutionSuccess) {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "tool", MessageSubType: ptr(t.Name), Content: "Used " + t.Name,
			Status: ptr("success"), ToolInfo: &gitlabapi.ToolInfo{Name: t.Name, Args: logArgs(args), ToolResponse: bound(text, 4096)}})
	}
	if !ok && slices.Contains(c.UILogEvents, flowconfig.EventToolExecutionFailed) {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "tool", MessageSubType: ptr(t.Name), Content: "Failed: " + t.Name + ": " + bound(text, 1024),
			Status: ptr("failure"), ToolInfo: &gitlabapi.ToolInfo{Name: t.Name, Args: logArgs(args)}})
	}
}

// deterministic runs the component's one tool with its inputs as
// arguments; a failure fails the flow.
func (r *run) deterministic(ctx context.Context, c *flowconfig.Component) error {
	t := r.tool(c.ToolName)
	if t == nil {
		return &StepError{Component: c.Name, Reason: "tool " + c.ToolName + " is not available (unknown or not permitted by the workflow's privileges)"}
	}
	in, err := r.inputs(c)
	if err != nil {
		return err
	}
	args := map[string]any{}
	for k, v := range in {
		args[k] = v
	}
	// A deterministic step never asks for approval (GitLab's has no
	// require_tool_approval); one an earlier version paused for approval
	// fails when the person rejected it.
	if r.decided && r.cont && !r.approved {
		return &StepError{Component: c.Name, Reason: "the user rejected the tool call " + t.Name}
	}
	r.approvals.Pending = nil
	out, ok, err := r.callTool(ctx, c, t, args)
	if err != nil {
		return err
	}
	if !ok {
		return &StepError{Component: c.Name, Reason: "tool " + t.Name + " failed", Detail: bound(strings.TrimPrefix(out, "Error: "), 500)}
	}
	r.values[c.Name+".tool_responses"] = out
	return nil
}

// tool returns a tool the workflow's privileges permit, or nil.
func (r *run) tool(name string) *flowtools.Tool {
	ts, _ := r.e.o.Tools.Select([]string{name}, r.privileges())
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

func (r *run) privileges() []string {
	if len(r.w.AgentPrivileges) == 0 {
		return []string{flowtools.ReadOnlyGitLab}
	}
	return r.w.AgentPrivileges
}

func (r *run) addLog(e gitlabapi.UIChatLogEntry) {
	if e.Timestamp == "" {
		e.Timestamp = r.e.o.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	if e.MessageID == "" {
		e.MessageID = e.MessageType + "-" + uuid.NewString()
	}
	if len(r.log) >= maxLogEntries {
		r.log = r.log[1:]
	}
	r.log = append(r.log, e)
}

// notify streams the UI log to the client.
func (r *run) notify(ctx context.Context) error {
	log := r.log
	if log == nil {
		log = []gitlabapi.UIChatLogEntry{}
	}
	b, err := json.Marshal(map[string]any{"channel_values": map[string]any{"ui_chat_log": log, "plan": gitlabapi.Plan{Steps: []gitlabapi.PlanStep{}}}})
	if err != nil {
		return err
	}
	return r.s.Notify(ctx, &contract.NewCheckpoint{Status: r.status, Checkpoint: string(b), Goal: r.goal})
}

// maxCheckpointBytes keeps a persisted checkpoint well inside the 4 MiB
// action limit.
const maxCheckpointBytes = 3 << 20

// persist saves a checkpoint Rails can show (ui_chat_log, status, goal)
// with the engine's state; when it would not fit, the oldest log entries
// and then the state are left out.
func (r *run) persist(ctx context.Context) error {
	state := r.stateJSON()
	for range 12 {
		cp := &gitlabapi.Checkpoint{ChannelValues: gitlabapi.ChannelValues{
			UIChatLog: r.log, Status: r.status, Start: &gitlabapi.StartValues{Goal: r.goal}, Plan: &gitlabapi.Plan{Steps: []gitlabapi.PlanStep{}},
			Conversation: state,
		}}
		if cp.ChannelValues.UIChatLog == nil {
			cp.ChannelValues.UIChatLog = []gitlabapi.UIChatLogEntry{}
		}
		b, err := cp.Encode()
		if err != nil {
			return err
		}
		if len(b) > maxCheckpointBytes {
			if len(r.log) > 1 {
				r.log = r.log[len(r.log)/2:]
			} else {
				state = nil
			}
			continue
		}
		compress := slices.Contains(r.s.Caller().FeatureFlags, compressFlag)
		if err := r.gl.SaveCheckpoint(ctx, r.w.ID, cp, r.lastTS, compress); err != nil {
			return err
		}
		r.lastTS = cp.ID
		return r.notify(ctx)
	}
	return errors.New("the flow's state does not fit a checkpoint")
}

// logArgs bounds tool arguments for the UI log (file contents would
// otherwise fill checkpoints).
func logArgs(args map[string]any) map[string]any {
	out := make(map[string]any, len(args))
	for k, v := range args {
		if s, ok := v.(string); ok && len(s) > 1024 {
			v = flowtools.Truncate(s, 1024)
		}
		out[k] = v
	}
	return out
}

// end records the terminal state: the reason (for failures) in the UI
// log, a checkpoint, Rails' status event and a last newCheckpoint.
func (r *run) end(ctx context.Context, status, event, reason string) (flow.Outcome, error) {
	r.status = status
	if status == statusFinished {
		r.next = flowconfig.End
	}
	if reason != "" {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "workflow_end", Content: "The flow stopped: " + reason, Status: ptr("failure")})
	} else {
		r.addLog(gitlabapi.UIChatLogEntry{MessageType: "workflow_end", Content: "The flow finished.", Status: ptr("success")})
	}
	if err := r.persist(ctx); err != nil {
		return "", err
	}
	if err := r.gl.StatusEvent(ctx, r.w.ID, event); err != nil {
		return "", err
	}
	return flow.Finished, nil
}

func ptr(s string) *string { return &s }
