package appliance

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/model"

	"github.com/duo-confidential/duo-confidential/gateway"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/chat"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/foundationalflows"
)

// newAgentPlatform builds the Agent Platform service on the gateway's
// parts: GitLab's key set and our keys (audience
// gitlab-duo-workflow-service), and the model client bound to the proxy's
// in-memory listener — the agent's only way to a model.
func (a *Appliance) newAgentPlatform() (*agentplatform.Service, error) {
	cfg := a.o.Config
	f := a.front
	v, signer, err := gateway.NewAuth(gateway.AuthOptions{GitLabURL: cfg.Gateway.GitLabURL, GitLabKeys: f.jwks, Local: f.keys, ServiceName: agentplatform.ServiceName})
	if err != nil {
		return nil, fmt.Errorf("agent platform auth: %w", err)
	}
	log := a.log.With("part", "agent-platform")
	metrics, err := agentplatform.NewPrometheusMetrics(a.admin.registry)
	if err != nil {
		return nil, fmt.Errorf("agent platform metrics: %w", err)
	}
	agent, err := chat.New(chat.Options{Model: f.model, Logger: log, ModelCalls: func(u model.Usage, err error) {
		metrics.ModelCall(u.PromptTokens, u.CompletionTokens, err != nil)
	}})
	if err != nil {
		return nil, err
	}
	flows, err := foundationalflows.New(foundationalflows.Options{Model: f.model, Logger: log, ModelCalls: func(u model.Usage, err error) {
		metrics.ModelCall(u.PromptTokens, u.CompletionTokens, err != nil)
	}, ForceToolChoice: cfg.AgentPlatform.ForceToolChoice})
	if err != nil {
		return nil, fmt.Errorf("agent platform flows: %w", err)
	}
	byDef := map[string]flow.Flow{"chat": agent}
	for name, fl := range flows.ByDefinition {
		byDef[name] = fl
	}
	served := slices.Clone(f.models)
	for _, m := range cfg.Gateway.AllowedModels {
		if !slices.Contains(served, m) {
			served = append(served, m)
		}
	}
	windows := map[string]int{}
	for _, m := range served {
		windows[m] = cfg.AgentPlatform.ContextWindowFor(m)
	}
	return agentplatform.New(agentplatform.Options{
		Validator:   v,
		Signer:      agentplatform.TokenSigner(signer),
		Flows:       byDef,
		InlineFlow:  flows.Inline,
		Models:      agentplatform.RequireToolCalling(agentplatform.ServedModels(served, windows), (&modelTasks{client: f.model}).tasks),
		TLS:         a.agentPlatformTLS(),
		MaxSessions: cfg.AgentPlatform.MaxSessions,
		IdleTimeout: cfg.AgentPlatform.IdleTimeout,
		Metrics:     metrics,
		Logger:      log,
	})
}

// agentPlatformTLS is the listeners' TLS configuration with ALPN h2 (gRPC
// requires it; Workhorse's client refuses a server without it); nil with
// tls.source off.
func (a *Appliance) agentPlatformTLS() *tls.Config {
	tc := a.certs.ServerConfig()
	if tc == nil {
		return nil
	}
	tc = tc.Clone()
	tc.NextProtos = []string{"h2"}
	return tc
}

// AgentPlatform returns the Agent Platform service, or nil when it is not
// configured.
func (a *Appliance) AgentPlatform() *agentplatform.Service { return a.agent }

// AgentPlatformReady reports whether Agentic Chat can run now: the
// gateway's conditions (attested backend, GitLab's keys, served models)
// and a listener.
func (a *Appliance) AgentPlatformReady() (bool, string) {
	if a.agent == nil {
		return false, "the Agent Platform is not configured: set gateway.gitlab_url and agent_platform.listen"
	}
	if !a.agentServing.Load() {
		return false, "the Agent Platform has no listener"
	}
	return a.GatewayReady()
}

// runAgentPlatform serves the Agent Platform on ln until it is shut down.
func (a *Appliance) runAgentPlatform(ln net.Listener, errc chan<- error) {
	a.agentServing.Store(true)
	go func() {
		if err := a.agent.Serve(ln); err != nil {
			errc <- err
		}
	}()
	a.log.Info("agent platform listening", "addr", ln.Addr().String(), "tls", a.certs.Source(),
		"gitlab_setting", "Duo Agent Platform service URL = "+ln.Addr().String())
}

// shutdownAgentPlatform drains within ctx: running sessions may finish;
// those still running near its deadline end as a server shutdown, so
// Workhorse resumes them elsewhere.
func (a *Appliance) shutdownAgentPlatform(ctx context.Context) {
	if a.agent != nil && a.agentServing.Load() {
		a.agent.Shutdown(ctx)
	}
}

// modelTasks caches the backend's /v1/models tasks for the Agent
// Platform's tool_calling check: one listing per modelTasksTTL at most, and
// none on the session's critical path once cached.
type modelTasks struct {
	client *model.Client

	mu      sync.Mutex
	fetched time.Time
	byID    map[string][]string
}

const modelTasksTTL = 5 * time.Minute

// tasks returns the tasks the backend lists for id (nil when it lists
// none, or cannot be asked: the check then lets the model pass).
func (m *modelTasks) tasks(ctx context.Context, id string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil || time.Since(m.fetched) > modelTasksTTL {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		infos, err := m.client.ModelInfos(cctx)
		if err != nil {
			return nil
		}
		m.byID = make(map[string][]string, len(infos))
		for _, i := range infos {
			m.byID[i.ID] = i.Tasks
		}
		m.fetched = time.Now()
	}
	return m.byID[id]
}
