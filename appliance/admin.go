package appliance

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/jwks"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/ui"
)

// adminPart is the admin listener's half of the appliance: the one metrics
// registry, the request instruments the proxy and gateway report to, and
// the admin UI server (nil when admin.listen is empty).
type adminPart struct {
	registry *prometheus.Registry
	in       *ui.Instruments
	srv      *ui.Server
	// Addresses the listeners were given, for the GitLab-setup checks.
	proxyAddr, gatewayAddr atomic.Pointer[string]
}

// newAdminPart makes the registry and the instruments; the UI server is
// built by buildAdmin once the proxy and gateway exist.
func newAdminPart() (*adminPart, error) {
	reg := prometheus.NewRegistry()
	in, err := ui.NewInstruments(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &adminPart{registry: reg, in: in}, nil
}

// buildAdmin builds the admin UI server from configuration.
func (a *Appliance) buildAdmin() error {
	cfg := a.o.Config.Admin
	if !cfg.Enabled() {
		return nil
	}
	nets, err := cfg.AdminNetworks()
	if err != nil {
		return fmt.Errorf("admin.allowed_networks: %w", err)
	}
	probe, err := a.probeClient()
	if err != nil {
		return err
	}
	srv, err := ui.New(ui.Options{
		ProbeClient:     probe,
		Sources:         a.adminSources(),
		Registry:        a.admin.registry,
		PasswordFile:    a.o.Config.AdminPasswordPath(),
		TokenSHA256:     cfg.TokenSHA256,
		AllowedNetworks: nets,
		MetricsAuth:     cfg.MetricsAuth,
		SessionTimeout:  cfg.SessionTimeout,
		Secure:          func() bool { return !a.tlsState().Plaintext },
		Logger:          a.log.With("part", "admin"),
	})
	if err != nil {
		return err
	}
	a.admin.srv = srv
	return nil
}

// adminSources is what the admin UI reads.
func (a *Appliance) adminSources() ui.Sources {
	s := ui.Sources{
		Version: a.o.Version,
		Replica: a.o.Replica,
		Ready:   a.Ready,
		Trust:   a.Status,
		TLS:     a.tlsState,
		Setup:   a.adminSetup,
	}
	if a.o.Sandbox != nil {
		s.Notice = "SANDBOX MODE: local sandbox backend with test-signed evidence, NOT CONFIDENTIAL"
	}
	if a.manager != nil {
		path := a.o.Config.TrustLogPath()
		s.TrustLog = func() (string, []attest.TrustEntry, error) {
			tl, err := attest.OpenTrustLog(path)
			if err != nil {
				return path, nil, err
			}
			entries, err := tl.Entries()
			return path, entries, err
		}
	}
	if a.receipts != nil {
		s.Receipts = (&receiptsView{a: a}).state
	}
	if a.front != nil {
		s.GatewayReady = a.GatewayReady
		s.GitLabKeys = func() *jwks.Status { return a.GitLabKeys() }
		s.Keys = func() *keys.Store { return a.Keys() }
		s.TestConnection = a.front.gw.TestConnection
		s.GitLabConnect = func(ctx context.Context, req ui.ConnectRequest) (string, bool, error) {
			return a.ConnectGitLab(ctx, req.Token, ConnectOptions{Apply: req.Apply, KeepToken: req.KeepToken})
		}
	}
	if a.gitlab != nil {
		s.GitLabWatch, s.GitLabDrift = true, a.GitLabDrift
	}
	if a.agent != nil {
		s.AgentPlatformReady = a.AgentPlatformReady
		s.AgentPlatformSessions = a.agent.ActiveSessions
	}
	return s
}

// adminSetup is the configuration the GitLab setup page shows.
func (a *Appliance) adminSetup() ui.Setup {
	cfg := a.o.Config
	g := cfg.Gateway
	m := func(v string) string {
		if v == "" {
			return g.Models.Default
		}
		return v
	}
	su := ui.Setup{
		GatewayEnabled: g.Enabled(), GitLabURL: g.GitLabURL, ServiceName: g.ServiceName,
		GatewayListen: g.Listen, ProxyListen: cfg.Proxy.Listen,
		HTTPS:       !a.tlsState().Plaintext,
		ProxyTokens: len(cfg.Proxy.InboundTokenSHA256) > 0,
		Models: ui.SetupModels{Default: g.Models.Default, CodeCompletions: m(g.Models.CodeCompletions),
			CodeGenerations: m(g.Models.CodeGenerations), DuoChat: m(g.Models.DuoChat)},
		AllowedModels: g.AllowedModels, CompletionFormat: g.CompletionFormat,
		ChatTimeout: g.Timeouts.Chat, CheckTimeout: g.Timeouts.Check,
	}
	scheme := "http://"
	if su.HTTPS {
		scheme = "https://"
	}
	if a.agent != nil {
		su.AgentPlatformListen, su.AgentContextWindow = cfg.AgentPlatform.Listen, cfg.AgentPlatform.ContextWindow
	}
	if p := a.admin.gatewayAddr.Load(); p != nil {
		su.GatewayListen = *p
		su.GatewayProbe = scheme + config.ProbeAddr(*p)
	}
	if p := a.admin.proxyAddr.Load(); p != nil {
		su.ProxyListen = *p
		su.ProxyProbe = scheme + config.ProbeAddr(*p)
	}
	return su
}

// serveAdmin records the listeners' addresses and serves the admin UI on
// ls.Admin (when both exist).
func (a *Appliance) serveAdmin(ls Listeners, errc chan<- error) {
	if ls.Proxy != nil {
		s := ls.Proxy.Addr().String()
		a.admin.proxyAddr.Store(&s)
	}
	if ls.Gateway != nil {
		s := ls.Gateway.Addr().String()
		a.admin.gatewayAddr.Store(&s)
	}
	if ls.Admin == nil || a.admin.srv == nil {
		return
	}
	go func() {
		if err := a.admin.srv.Serve(ls.Admin); err != nil {
			errc <- fmt.Errorf("admin: %w", err)
		}
	}()
	a.log.Info("admin UI listening", "addr", ls.Admin.Addr().String())
}

// shutdownAdmin stops the admin listener (first: it only reads state).
func (a *Appliance) shutdownAdmin(ctx context.Context) error {
	if a.admin.srv == nil {
		return nil
	}
	if err := a.admin.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("drain admin: %w", err)
	}
	return nil
}

// Registry is the appliance's one metrics registry (served at /metrics).
func (a *Appliance) Registry() *prometheus.Registry { return a.admin.registry }

// Admin returns the admin UI server, or nil when admin.listen is empty.
func (a *Appliance) Admin() *ui.Server { return a.admin.srv }
