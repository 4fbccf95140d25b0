package flowconfig

// Config is a parsed, validated v1 flow.
type Config struct {
	Version     string `json:"version"`
	Environment string `json:"environment"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	// Components in definition order; names are unique.
	Components []Component `json:"components"`
	Routers    []Router    `json:"routers"`
	Flow       Flow        `json:"flow"`
	// Ignored lists keys this service does not interpret (GitLab adds keys
	// over time; they are reported, not fatal).
	Ignored []string `json:"ignored,omitempty"`
}

// Environments of the v1 schema.
const (
	EnvAmbient     = "ambient"
	EnvChat        = "chat"
	EnvChatPartial = "chat-partial"
)

// Component types of the v1 schema.
const (
	TypeAgent         = "AgentComponent"
	TypeDeterministic = "DeterministicStepComponent"
	TypeOneOff        = "OneOffComponent"
)

// End is the router target that ends the flow.
const End = "end"

// UI log events a component may emit.
const (
	EventToolCallInput        = "on_tool_call_input"
	EventToolExecutionSuccess = "on_tool_execution_success"
	EventToolExecutionFailed  = "on_tool_execution_failed"
	EventAgentFinalAnswer     = "on_agent_final_answer"
)

// Component is one step of a flow.
type Component struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Prompt is the resolved prompt (Agent and OneOff components).
	Prompt *Prompt `json:"prompt,omitempty"`
	// Toolset names the tools an AgentComponent may call.
	Toolset []string `json:"toolset,omitempty"`
	// ToolName is the one tool of a Deterministic or OneOff component.
	ToolName string  `json:"tool_name,omitempty"`
	Inputs   []Input `json:"inputs,omitempty"`
	// UILogEvents are the events that become ui_chat_log entries.
	UILogEvents []string `json:"ui_log_events,omitempty"`
	// UIRoleAs is how the UI labels the component's messages.
	UIRoleAs string `json:"ui_role_as,omitempty"`
	// MaxCorrectionAttempts bounds a OneOffComponent's retries.
	MaxCorrectionAttempts int `json:"max_correction_attempts,omitempty"`
	// RequireToolApproval makes an AgentComponent ask the person before a
	// tool call runs (GitLab's require_tool_approval; false by default).
	RequireToolApproval bool `json:"require_tool_approval,omitempty"`
	// PreApprovedTools are tools of an AgentComponent that run without
	// asking even when RequireToolApproval is set.
	PreApprovedTools []string `json:"pre_approved_tools,omitempty"`
	// MaxCycles bounds an AgentComponent's model cycles; nil when the
	// config leaves it out.
	MaxCycles *MaxCycles `json:"max_cycles,omitempty"`
}

// MaxCycles is an AgentComponent's cycle limit: after Threshold model
// cycles it must give its final answer; WarningOffset cycles before that
// it is told the limit is near.
type MaxCycles struct {
	Threshold int `json:"threshold"`
	// WarningOffset is how many cycles before Threshold the warning comes;
	// nil means no warning.
	WarningOffset *int `json:"iteration_warning_offset,omitempty"`
}

// Input maps a value of the flow's context (or a literal) to a name the
// prompt or the tool sees.
type Input struct {
	// From is a context path without the "context:" prefix (e.g. "goal",
	// "build_context.tool_responses"), or the literal text.
	From    string `json:"from"`
	As      string `json:"as"`
	Literal bool   `json:"literal,omitempty"`
	// Optional inputs resolve to nothing instead of failing when absent.
	Optional bool `json:"optional,omitempty"`
}

// Router moves from one component to the next.
type Router struct {
	From string `json:"from"`
	// To is set for a plain router.
	To string `json:"to,omitempty"`
	// Condition is set for a conditional router.
	Condition *Condition `json:"condition,omitempty"`
}

// Condition routes by a context value (usually a final answer).
type Condition struct {
	Input string `json:"input"`
	// Routes maps the value to a component or End; "default_route" is the
	// fallback when present.
	Routes map[string]string `json:"routes"`
}

// DefaultRoute is the condition key used when no other route matches.
const DefaultRoute = "default_route"

// Flow is the flow's entry point and declared additional-context inputs.
type Flow struct {
	EntryPoint string          `json:"entry_point"`
	Inputs     []FlowInputSpec `json:"inputs,omitempty"`
}

// FlowInputSpec declares an additional-context category the flow reads.
type FlowInputSpec struct {
	Category    string         `json:"category"`
	InputSchema map[string]any `json:"input_schema,omitempty"`
}

// Prompt is a resolved prompt: inline in the config or from the registry.
type Prompt struct {
	ID string `json:"prompt_id"`
	// Version is the registry version chosen ("" for an inline prompt).
	Version string `json:"version,omitempty"`
	Inline  bool   `json:"inline,omitempty"`
	System  string `json:"system,omitempty"`
	User    string `json:"user,omitempty"`
}

// Component returns the component named name, or nil.
func (c *Config) Component(name string) *Component {
	for i := range c.Components {
		if c.Components[i].Name == name {
			return &c.Components[i]
		}
	}
	return nil
}

// Next is where the flow goes after component from, given a lookup of
// context values; "" when the condition matches no route.
func (c *Config) Next(from string, lookup func(path string) (string, bool)) string {
	for _, r := range c.Routers {
		if r.From != from {
			continue
		}
		if r.Condition == nil {
			return r.To
		}
		v, _ := lookup(r.Condition.Input)
		if to, ok := r.Condition.Routes[v]; ok {
			return to
		}
		if to, ok := r.Condition.Routes[DefaultRoute]; ok {
			return to
		}
		return ""
	}
	return ""
}
