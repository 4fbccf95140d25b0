package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// Sandbox runs the appliance against a local sandbox backend. Its test
// roots, collateral and manifest are trusted only through this value, which
// only the demo and `serve --sandbox` construct; no configuration key can.
type Sandbox struct {
	Endpoint   string // e.g. http://127.0.0.1:port
	Roots      *attest.Roots
	Collateral attest.CollateralSource
	Manifest   []byte
	// FixedSecret skips attestation and exchange (interoperability and
	// benchmarks against other implementations).
	FixedSecret *envelope.Secret
}

// Options configures an Appliance.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger
	Version string
	Sandbox *Sandbox
	// APIKey overrides privatemode.api_key_file (sandbox and tests).
	APIKey string
	// GitLabClient fetches GitLab's discovery document and keys; nil builds
	// one from the outbound configuration. The demo passes one that trusts
	// its demo issuer's throwaway certificate.
	GitLabClient *http.Client
	// Env replaces the process environment for key variables
	// (AIGW_SELF_SIGNED_JWT__*); nil means os.Environ (tests set it).
	Env []string
	// ShutdownDelay is how long, once shutdown begins, the appliance
	// reports not ready while still accepting and serving everything, so
	// a load balancer's health checks take it out of rotation before its
	// listeners close. 0: close at once (Kubernetes does the same wait
	// with a preStop hook before it sends SIGTERM).
	ShutdownDelay time.Duration
	// Replica names this appliance among replicas in /api/status and
	// metrics; empty means the host name (in Kubernetes, the pod name).
	Replica string
	// ReceiptFiles opens receipt files; nil uses the file system. Tests
	// inject write failures (a full disk) here.
	ReceiptFiles func(path string) (receipts.File, error)
}

// Appliance wires the parts: trust (attestation and secret), the proxy.
type Appliance struct {
	o       Options
	log     *slog.Logger
	manager *secret.Manager // nil with a fixed secret
	secrets proxy.Secrets
	proxy   *proxy.Server
	front   *front // nil when gateway.gitlab_url is not set
	// agent is the Agent Platform service, nil when not configured;
	// agentServing says RunListeners gave it a listener.
	agent        *agentplatform.Service
	agentServing atomic.Bool
	certs        *apptls.Manager
	serving      chan struct{} // closed once every listener serves
	admin        *adminPart
	gitlab       *gitlabWatch // nil unless gitlab_admin.watch
	// trustLog is the verifier's trust log (nil with a fixed secret); GitLab
	// drift events go into the same chain through the same instance.
	trustLog *attest.TrustLog
	// draining is set when shutdown begins: from then on every readiness
	// answer is "shutting down" while requests are still served.
	draining atomic.Bool
	// receipts is the per-request receipt log; nil when receipts.record is off.
	receipts *receipts.Log
}

// New builds the appliance from configuration; it does no network I/O.
func New(o Options) (*Appliance, error) {
	if o.Sandbox != nil && !SandboxBuilt {
		return nil, errors.New("sandbox mode is not part of this build: a packaged duo-confidential never trusts test roots")
	}
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Replica == "" {
		o.Replica, _ = os.Hostname()
	}
	a := &Appliance{o: o, log: log, serving: make(chan struct{})}
	// Fail at start, naming the directory, rather than at the first
	// attestation that cannot be recorded (which fails closed anyway).
	if err := statedir.CheckWritable(cfg.StateDir); err != nil {
		return nil, err
	}
	var err error
	if a.admin, err = newAdminPart(); err != nil {
		return nil, err
	}
	apiKey := o.APIKey
	if apiKey == "" && cfg.Privatemode.APIKeyFile != "" {
		b, err := os.ReadFile(cfg.Privatemode.APIKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read privatemode.api_key_file: %w", err)
		}
		apiKey = strings.TrimSpace(string(b))
	}
	if apiKey == "" {
		return nil, errors.New("no Privatemode API key: set privatemode.api_key_file")
	}
	endpoint := cfg.Privatemode.Endpoint
	sb := o.Sandbox
	if sb != nil {
		endpoint = sb.Endpoint
		log.Warn("SANDBOX MODE: the backend is a local sandbox with test-signed evidence; NOTHING IS CONFIDENTIAL")
	}
	client, err := cfg.OutboundStreamClient()
	if err != nil {
		return nil, err
	}
	switch {
	case sb != nil && sb.FixedSecret != nil:
		a.secrets = fixedSecrets{*sb.FixedSecret}
	default:
		verifier, err := a.verifier()
		if err != nil {
			return nil, err
		}
		control, err := cfg.OutboundClient()
		if err != nil {
			return nil, err
		}
		api, err := secret.NewClient(endpoint, apiKey, proxy.ProtocolVersion, control)
		if err != nil {
			return nil, err
		}
		m, err := secret.NewManager(secret.Options{
			Attester:         api,
			Exchanger:        api,
			Verifier:         verifier,
			ReattestInterval: cfg.Attestation.ReattestInterval,
			Logger:           log.With("part", "trust"),
			OnChange:         a.trustChanged,
		})
		if err != nil {
			return nil, err
		}
		a.manager = m
		a.secrets = managerSecrets{m}
	}
	if err := a.openReceipts(); err != nil {
		return nil, err
	}
	internal, digests, err := internalToken(cfg.Proxy.InboundTokenSHA256)
	if err != nil {
		return nil, err
	}
	tokens, err := bearer.ParseDigests(digests)
	if err != nil {
		return nil, err
	}
	po := proxy.Options{
		Upstream:              endpoint,
		AllowInsecureUpstream: sb != nil,
		APIKey:                apiKey,
		Secrets:               a.secrets,
		Tokens:                tokens,
		MaxRequestBody:        cfg.Proxy.MaxRequestBytes,
		MaxInFlight:           cfg.Proxy.MaxInFlight,
		ReadTimeout:           cfg.Proxy.ReadTimeout,
		UpstreamTimeout:       cfg.Proxy.UpstreamTimeout,
		StreamIdleTimeout:     cfg.Proxy.StreamIdleTimeout,
		HTTPClient:            client,
		Logger:                log.With("part", "proxy"),
		StrictOCSP:            cfg.Proxy.StrictOCSP,
		PlatformHeaders:       cfg.Proxy.PlatformHeaders,
		Ready:                 a.Ready,
		Metrics:               a.admin.in.Proxy(),
	}
	if a.receipts != nil {
		po.Receipts = receiptSink{a.receipts}
	}
	if sb != nil {
		po.Notice = "SANDBOX MODE: local sandbox backend with test-signed evidence, NOT CONFIDENTIAL"
	}
	if cfg.Proxy.CacheSalt == config.CacheSaltShared {
		b, err := os.ReadFile(cfg.Proxy.SharedSaltFile)
		if err != nil {
			return nil, fmt.Errorf("read proxy.shared_salt_file: %w", err)
		}
		po.CacheSaltMode, po.SharedSalt = proxy.CacheSaltShared, strings.TrimSpace(string(b))
	}
	if a.proxy, err = proxy.New(po); err != nil {
		return nil, err
	}
	if a.certs, err = a.newCerts(); err != nil {
		return nil, err
	}
	if cfg.Gateway.Enabled() {
		if a.front, err = a.newFront(internal, po.Notice); err != nil {
			return nil, err
		}
		if cfg.AgentPlatformEnabled() {
			if a.agent, err = a.newAgentPlatform(); err != nil {
				return nil, err
			}
		}
	} else {
		log.Info("gateway off: set gateway.gitlab_url to serve GitLab Duo")
	}
	a.gitlab = newGitLabWatch(cfg, o.GitLabClient, log, a.recordGitLab)
	if err := a.buildAdmin(); err != nil {
		return nil, err
	}
	return a, nil
}

// verifier builds the attestation verifier from configuration, or from the
// sandbox's test roots in sandbox mode.
func (a *Appliance) verifier() (*attest.Verifier, error) {
	cfg := a.o.Config
	tl, err := attest.OpenTrustLog(cfg.TrustLogPath())
	if err != nil {
		return nil, err
	}
	a.trustLog = tl
	v := &attest.Verifier{TrustLog: tl}
	v.Hardware.MaxCollateralAge = cfg.Attestation.Collateral.MaxAge
	if v.Hardware.TCBPolicy, err = cfg.TCBPolicy(); err != nil {
		return nil, err
	}
	if sb := a.o.Sandbox; sb != nil {
		v.Manifest = attest.ManifestPolicy{Mode: attest.ModePinned, Pinned: sb.Manifest}
		v.Hardware.Roots = sb.Roots
		v.Hardware.Collateral = sb.Collateral
		return v, nil
	}
	if v.Manifest, err = cfg.ManifestPolicy("", config.Online); err != nil {
		return nil, err
	}
	if v.Hardware.Collateral, err = cfg.CollateralSource("", config.OfflineIf(!cfg.Attestation.Collateral.Online)); err != nil {
		return nil, err
	}
	return v, nil
}

// Proxy returns the proxy server (for tests and benchmarks).
func (a *Appliance) Proxy() *proxy.Server { return a.proxy }

// Ready reports whether requests can be served now, and if not, why.
func (a *Appliance) Ready() (bool, string) {
	if a.draining.Load() {
		return false, "shutting down"
	}
	// Every missing part is named: an operator fixing one (say, a full
	// disk that stops both receipts and the trust log) should not
	// discover the next only after the first is fixed.
	rok, rwhy := a.receiptsReady()
	if a.manager == nil {
		if !rok {
			return false, rwhy
		}
		return true, "sandbox with a fixed secret (NOT CONFIDENTIAL)"
	}
	st := a.manager.Status()
	switch {
	case rok:
		return st.Ready, st.Reason
	case st.Ready:
		return false, rwhy
	default:
		return false, st.Reason + "; " + rwhy
	}
}

// Reattest asks the trust manager to attest the backend again now (an
// operator's or a test's hook); it does not block. With a fixed secret
// there is nothing to attest and it does nothing.
func (a *Appliance) Reattest() {
	if a.manager != nil {
		a.manager.Reattest()
	}
}

// Status returns the trust state for status pages; nil with a fixed secret.
func (a *Appliance) Status() *secret.Status {
	if a.manager == nil {
		return nil
	}
	st := a.manager.Status()
	return &st
}

// Listeners are the appliance's sockets: the proxy's OpenAI-compatible API
// and, when gateway.gitlab_url is set, the GitLab-facing gateway.
type Listeners struct {
	Proxy   net.Listener
	Gateway net.Listener
	// AgentPlatform serves the gRPC Agent Platform (agent_platform.listen)
	// when it is configured; nil serves none. The service does its own TLS
	// (ALPN h2), so this listener is passed in plain.
	AgentPlatform net.Listener
	// Admin serves the admin UI, /api/status and /metrics (admin.listen);
	// nil serves none.
	Admin net.Listener
}

// Run serves the proxy on ln (and no gateway); see RunListeners.
func (a *Appliance) Run(ctx context.Context, ln net.Listener, drain time.Duration) error {
	return a.RunListeners(ctx, Listeners{Proxy: ln}, drain)
}

// RunListeners serves the proxy and the gateway and keeps the backend
// attested and GitLab's keys fresh until ctx is cancelled, then drains
// in-flight requests and streams for up to drain: the gateway first, since
// its streams run through the proxy.
func (a *Appliance) RunListeners(ctx context.Context, ls Listeners, drain time.Duration) error {
	if a.front != nil && ls.Gateway == nil {
		return errors.New("the gateway is configured (gateway.gitlab_url) but has no listener")
	}
	errc := make(chan error, 8)
	mctx, stopManager := context.WithCancel(context.Background())
	defer stopManager()
	if err := a.certs.Start(mctx); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	defer a.certs.Stop()
	ls = a.secureListeners(ls)
	if a.manager != nil {
		go func() {
			if err := a.manager.Run(mctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("trust manager: %w", err)
			}
		}()
	}
	go func() { errc <- a.proxy.Serve(ls.Proxy) }()
	a.log.Info("proxy listening", "addr", ls.Proxy.Addr().String(), "url", a.URL(ls.Proxy))
	if a.front != nil {
		a.runFront(mctx, ls.Gateway, errc)
	}
	if a.agent != nil && ls.AgentPlatform != nil {
		a.runAgentPlatform(ls.AgentPlatform, errc)
	} else if a.agent != nil {
		a.log.Info("agent platform configured but given no listener: not served")
	}
	a.serveAdmin(ls, errc)
	close(a.serving)
	a.gitlab.run(mctx) // after serving: GitLab's checks call back into the gateway
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Readiness fails first; the listeners keep serving for the delay, so
	// health checks see the replica leave before it stops accepting.
	a.draining.Store(true)
	if d := a.o.ShutdownDelay; d > 0 {
		a.log.Info("shutting down: reporting not ready, still serving", "delay", d.String())
		time.Sleep(d)
	}
	a.log.Info("shutting down: draining in-flight requests", "timeout", drain.String())
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	errs := []error{a.shutdownAdmin(dctx)}
	// Agent sessions and gateway requests drain side by side (a session
	// may take most of the drain); both call the model through the
	// gateway's client and the proxy, which close after them.
	agentDrained := make(chan struct{})
	go func() { a.shutdownAgentPlatform(dctx); close(agentDrained) }()
	if a.front != nil {
		if err := a.front.gw.Shutdown(dctx); err != nil {
			errs = append(errs, fmt.Errorf("drain gateway: %w", err))
		}
	}
	<-agentDrained
	if err := a.proxy.Shutdown(dctx); err != nil {
		errs = append(errs, fmt.Errorf("drain: %w", err))
	}
	if a.front != nil {
		a.front.model.Close()
	}
	// Every request has ended: write the last receipts and a signed checkpoint.
	if err := a.closeReceipts(); err != nil {
		errs = append(errs, err)
	}
	// The secret stays usable while streams drain; stop the manager last.
	stopManager()
	return errors.Join(errs...)
}

// fixedSecrets serves one secret forever (sandbox interop mode only).
type fixedSecrets struct{ s envelope.Secret }

func (f fixedSecrets) Current() (envelope.Secret, error) { return f.s, nil }

// Trusted: the fixed secret is the only one.
func (f fixedSecrets) Trusted(id string) bool { return id == f.s.ID }
func (f fixedSecrets) Invalidate(context.Context, string) (envelope.Secret, error) {
	return f.s, errors.New("the fixed sandbox secret cannot be renewed")
}

// managerSecrets adapts the trust manager's secrets to the proxy's type.
type managerSecrets struct{ m *secret.Manager }

func (s managerSecrets) Current() (envelope.Secret, error) {
	sec, err := s.m.Current()
	return envelope.Secret{ID: sec.ID, Key: sec.Key}, err
}

// Trusted asks the trust manager whether a stream's secret is still trusted.
func (s managerSecrets) Trusted(id string) bool { return s.m.Trusted(id) }

func (s managerSecrets) Invalidate(ctx context.Context, id string) (envelope.Secret, error) {
	sec, err := s.m.Invalidate(ctx, id)
	return envelope.Secret{ID: sec.ID, Key: sec.Key}, err
}
