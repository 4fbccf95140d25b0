package config

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults of the agent_platform section.
const (
	DefaultAgentPlatformListen        = "127.0.0.1:50052"
	DefaultAgentPlatformContextWindow = 32768
	DefaultAgentPlatformMaxSessions   = 1000
	DefaultAgentPlatformIdleTimeout   = 10 * time.Minute
)

// AgentPlatformConfig is the Duo Agent Platform service (gRPC DuoWorkflow:
// Agentic Chat): where it listens, the context window of the appliance's
// models (the agent trims history to it), how many sessions may run at
// once and how long a silent session lives. It runs with the gateway
// (gateway.gitlab_url set) unless Listen is empty.
type AgentPlatformConfig struct {
	Listen        string `yaml:"listen"`
	ContextWindow int    `yaml:"context_window"`
	// ModelContextWindows overrides ContextWindow per model, as
	// "MODEL=TOKENS" entries (the decoder reads lists of strings, not maps).
	ModelContextWindows []string      `yaml:"model_context_windows"`
	MaxSessions         int           `yaml:"max_sessions"`
	IdleTimeout         time.Duration `yaml:"idle_timeout"`
	// ForceToolChoice makes flow steps force the model's tool call:
	// tool_choice "required" for agent steps, the named function for
	// one-off steps, instead of "auto" (with "auto" a model that answers in
	// text is asked again). Off by default because only some backends
	// accept it: vLLM 0.8.3 and later (Privatemode's serving stack) and
	// OpenAI's API do; older vLLM answers "required" with 400 Bad Request.
	// Agentic Chat always uses "auto".
	ForceToolChoice bool `yaml:"force_tool_choice"`
}

// Bounds of a context window in tokens.
const (
	minContextWindow = 4096
	maxContextWindow = 10_000_000
)

// ContextWindowFor returns the context window of model: its
// model_context_windows entry, else context_window. Call it on a validated
// configuration.
func (a AgentPlatformConfig) ContextWindowFor(model string) int {
	for _, e := range a.ModelContextWindows {
		if name, n, err := parseModelWindow(e); err == nil && name == model {
			return n
		}
	}
	return a.ContextWindow
}

// parseModelWindow reads one "MODEL=TOKENS" entry.
func parseModelWindow(e string) (string, int, error) {
	name, num, ok := strings.Cut(e, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", 0, errMalformedWindow
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil {
		return "", 0, errMalformedWindow
	}
	return name, n, nil
}

// errMalformedWindow is a model_context_windows entry that is not
// MODEL=TOKENS.
var errMalformedWindow = errors.New(`not MODEL=TOKENS (e.g. "qwen3-coder=131072")`)

// AgentPlatformEnabled reports whether the Agent Platform service runs.
func (c *Config) AgentPlatformEnabled() bool {
	return c.Gateway.Enabled() && c.AgentPlatform.Listen != ""
}

func (v *validator) agentPlatform() {
	a := v.c.AgentPlatform
	if a.Listen != "" {
		if _, port, err := net.SplitHostPort(a.Listen); err != nil || port == "" {
			v.fail("agent_platform.listen", "%q is not HOST:PORT (e.g. %s); leave it empty to turn the Agent Platform off", a.Listen, DefaultAgentPlatformListen)
		}
	}
	if a.ContextWindow < minContextWindow || a.ContextWindow > maxContextWindow {
		v.fail("agent_platform.context_window", "must be between %d and %d tokens; got %d", minContextWindow, maxContextWindow, a.ContextWindow)
	}
	seen := map[string]bool{}
	for _, e := range a.ModelContextWindows {
		name, n, err := parseModelWindow(e)
		switch {
		case err != nil:
			v.fail("agent_platform.model_context_windows", "%q is %v", e, err)
		case n < minContextWindow || n > maxContextWindow:
			v.fail("agent_platform.model_context_windows", "%q: the window must be between %d and %d tokens", e, minContextWindow, maxContextWindow)
		case seen[name]:
			v.fail("agent_platform.model_context_windows", "model %q is listed twice", name)
		}
		seen[name] = true
	}
	if a.MaxSessions < 1 || a.MaxSessions > 100_000 {
		v.fail("agent_platform.max_sessions", "must be between 1 and 100000; got %d", a.MaxSessions)
	}
	v.durationIn("agent_platform.idle_timeout", a.IdleTimeout, time.Minute, 24*time.Hour)
}
