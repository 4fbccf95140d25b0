package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/jwks"
)

// front is the GitLab-facing half of the appliance: the gateway, GitLab's
// key set, our own keys and the model client bound to the proxy.
type front struct {
	gw     *gateway.Server
	jwks   *jwks.Set
	keys   *keys.Store
	model  *model.Client
	memLn  *fasthttputil.InmemoryListener
	models []string
	check  atomic.Pointer[modelCheck]
}

// modelCheck is the outcome of checking the configured models against the
// proxy's /v1/models.
type modelCheck struct {
	ok     bool
	reason string
}

// internalTokenDigest prepares the proxy's inbound tokens for the gateway:
// when the proxy requires tokens, the gateway gets a random one of its own
// (never written anywhere), so the in-memory path needs no operator token.
func internalToken(digests []string) (token string, all []string, err error) {
	if len(digests) == 0 {
		return "", digests, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("internal proxy token: %w", err)
	}
	token = hex.EncodeToString(b[:])
	return token, append(slices.Clone(digests), bearer.Digest(token)), nil
}

// newFront builds the gateway from configuration. It does no network I/O:
// GitLab's keys are fetched by Run, in the background.
func (a *Appliance) newFront(token string, notice string) (*front, error) {
	cfg := a.o.Config
	g := cfg.Gateway
	log := a.log.With("part", "gateway")
	client := a.o.GitLabClient
	if client == nil {
		var err error
		if client, err = cfg.OutboundClient(); err != nil {
			return nil, err
		}
	}
	set, err := jwks.New(jwks.Options{IssuerURL: g.GitLabURL, HTTPClient: client, Logger: a.log.With("part", "gitlab-keys")})
	if err != nil {
		return nil, fmt.Errorf("gateway.gitlab_url: %w", err)
	}
	ko, err := keys.LoadEnv(cfg.GatewayKeyEnv(a.env()))
	if err != nil {
		return nil, err
	}
	store, err := keys.Open(cfg.KeysPath(), ko)
	if err != nil {
		return nil, fmt.Errorf("gateway keys: %w", err)
	}
	v, signer, err := gateway.NewAuth(gateway.AuthOptions{GitLabURL: g.GitLabURL, GitLabKeys: set, Local: store, ServiceName: g.ServiceName})
	if err != nil {
		return nil, err
	}
	memLn := fasthttputil.NewInmemoryListener()
	mc, err := model.New(model.Options{
		Dial:              func(context.Context) (net.Conn, error) { return memLn.Dial() },
		Token:             token,
		StreamIdleTimeout: cfg.Proxy.StreamIdleTimeout,
		Logger:            log,
	})
	if err != nil {
		return nil, err
	}
	models := ModelChoice(g, log)
	f := &front{jwks: set, keys: store, model: mc, memLn: memLn, models: models.All()}
	f.check.Store(&modelCheck{reason: "checking the configured models against the backend's /v1/models"})
	gw, err := gateway.New(gateway.Options{
		Validator: v,
		Model:     mc,
		Models:    models,
		Signer:    signer,
		LocalJWKS: store.PublicJWKS,
		Ready:     a.GatewayReady,
		Notice:    notice,
		Warning:   a.gitlabWarning,
		Timeouts: gateway.Timeouts{
			Completions: g.Timeouts.Completions, Generations: g.Timeouts.Generations,
			Chat: g.Timeouts.Chat, Prompts: g.Timeouts.Prompts, Check: g.Timeouts.Check,
		},
		MaxRequestBody: g.MaxRequestBytes,
		MaxInFlight:    g.MaxInFlight,
		ReadTimeout:    cfg.Proxy.ReadTimeout,
		Logger:         log,
		Metrics:        a.admin.in.Gateway(),
	})
	if err != nil {
		return nil, err
	}
	f.gw = gw
	return f, nil
}

// ModelChoice returns the gateway's per-feature model choice for the
// configuration; log receives its once-per-value warnings.
func ModelChoice(g config.GatewayConfig, log *slog.Logger) *gateway.Models {
	return &gateway.Models{
		Default: g.Models.Default,
		ByFeature: map[prompts.Feature]string{
			prompts.CodeCompletions: g.Models.CodeCompletions,
			prompts.CodeGenerations: g.Models.CodeGenerations,
			prompts.DuoChat:         g.Models.DuoChat,
		},
		Allowed:          g.AllowedModels,
		CompletionFormat: prompts.FIMFormat(g.CompletionFormat),
		Logger:           log,
	}
}

// env is the process environment, or the test's.
func (a *Appliance) env() []string {
	if a.o.Env != nil {
		return a.o.Env
	}
	return os.Environ()
}

// Gateway returns the gateway server, or nil when gateway.gitlab_url is not
// set.
func (a *Appliance) Gateway() *gateway.Server {
	if a.front == nil {
		return nil
	}
	return a.front.gw
}

// Keys returns the gateway's self-signed JWT keys, or nil without gateway.
func (a *Appliance) Keys() *keys.Store {
	if a.front == nil {
		return nil
	}
	return a.front.keys
}

// GitLabKeys returns the state of GitLab's key set, or nil without gateway.
func (a *Appliance) GitLabKeys() *jwks.Status {
	if a.front == nil {
		return nil
	}
	st := a.front.jwks.Status()
	return &st
}

// GatewayReady reports whether the gateway can serve Duo requests now and,
// if not, what is missing: the attested backend, GitLab's keys, or the
// configured models.
func (a *Appliance) GatewayReady() (bool, string) {
	if a.front == nil {
		return false, "the gateway is not configured: set gateway.gitlab_url"
	}
	if ok, why := a.Ready(); !ok {
		return false, "confidential backend not ready: " + why
	}
	if st := a.front.jwks.Status(); !st.Ready {
		why := "waiting for GitLab keys"
		if st.LastError != "" {
			why += ": " + st.LastError
		}
		return false, why
	}
	c := a.front.check.Load()
	return c.ok, c.reason
}

// checkModels verifies, once the backend is attested, that every configured
// model is served, retrying until it is so or ctx ends. An unknown model
// keeps the gateway not ready with a reason that names it.
func (f *front) checkModels(ctx context.Context, ready func() (bool, string), log *slog.Logger) {
	delay := time.Second
	for {
		if ok, _ := ready(); ok {
			c := f.checkOnce(ctx)
			f.check.Store(c)
			if c.ok {
				log.Info("configured models are served by the backend", "models", strings.Join(f.models, ", "))
				return
			}
			log.Error("gateway model check failed", "reason", c.reason)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
}

func (f *front) checkOnce(ctx context.Context) *modelCheck {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	served, err := f.model.Models(cctx)
	if err != nil {
		return &modelCheck{reason: "cannot list the backend's models: " + err.Error()}
	}
	var missing []string
	for _, m := range f.models {
		if !slices.Contains(served, m) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return &modelCheck{reason: fmt.Sprintf("configured model %s not served by the backend (it serves %s); fix gateway.models / gateway.allowed_models",
			strings.Join(missing, ", "), strings.Join(served, ", "))}
	}
	return &modelCheck{ok: true}
}

// runFront serves the gateway on ln, the proxy's in-memory listener for the
// gateway, GitLab's key set and the model check until ctx is done; then it
// drains the gateway before the proxy (the gateway's streams need it).
func (a *Appliance) runFront(ctx context.Context, ln net.Listener, errc chan<- error) {
	f := a.front
	go func() {
		if err := a.proxy.Serve(f.memLn); err != nil {
			errc <- fmt.Errorf("proxy (in-memory): %w", err)
		}
	}()
	go func() {
		if err := f.jwks.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("GitLab keys: %w", err)
		}
	}()
	go f.checkModels(ctx, a.Ready, a.log.With("part", "gateway"))
	go a.watchGatewayKeys(ctx, gatewayKeyPoll)
	go func() {
		if err := f.gw.Serve(ln); err != nil {
			errc <- fmt.Errorf("gateway: %w", err)
		}
	}()
	a.log.Info("gateway listening", "addr", ln.Addr().String(), "url", a.URL(ln), "gitlab", a.o.Config.Gateway.GitLabURL)
}
