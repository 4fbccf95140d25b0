package config

import (
	"net"
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
	Listen        string        `yaml:"listen"`
	ContextWindow int           `yaml:"context_window"`
	MaxSessions   int           `yaml:"max_sessions"`
	IdleTimeout   time.Duration `yaml:"idle_timeout"`
}

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
	if a.ContextWindow < 4096 || a.ContextWindow > 10_000_000 {
		v.fail("agent_platform.context_window", "must be between 4096 and 10000000 tokens; got %d", a.ContextWindow)
	}
	if a.MaxSessions < 1 || a.MaxSessions > 100_000 {
		v.fail("agent_platform.max_sessions", "must be between 1 and 100000; got %d", a.MaxSessions)
	}
	v.durationIn("agent_platform.idle_timeout", a.IdleTimeout, time.Minute, 24*time.Hour)
}
