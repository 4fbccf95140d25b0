package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Values of Options.MetricsAuth.
const (
	MetricsAuthToken = "token"
	MetricsAuthNone  = "none"
)

// Options configures a Server. Registry is required.
type Options struct {
	Sources Sources
	// Registry is the appliance's one metrics registry: /metrics serves it
	// and the traffic view reads it. New registers the state collector.
	Registry *prometheus.Registry
	// PasswordFile holds the admin password's bcrypt hash.
	PasswordFile string
	// TokenSHA256 are hex digests of admin API tokens (Bearer on
	// /api/status and /metrics; also accepted at sign-in).
	TokenSHA256 []string
	// AllowedNetworks restricts every request by client address; empty
	// allows every address that reaches the listener.
	AllowedNetworks []netip.Prefix
	// MetricsAuth is MetricsAuthToken (default) or MetricsAuthNone.
	MetricsAuth string
	// SessionTimeout ends idle sessions (default 30m).
	SessionTimeout time.Duration
	// Secure reports whether the admin listener serves TLS, which makes
	// cookies Secure (and __Host- prefixed); nil means plaintext.
	Secure func() bool
	// ProbeClient makes the GitLab-setup checks' HTTP calls to the
	// appliance's own listeners; nil uses a plain client.
	ProbeClient *http.Client
	Logger      *slog.Logger
	Now         func() time.Time
}

// Server is the admin UI, status API and metrics endpoint.
type Server struct {
	o       Options
	log     *slog.Logger
	tokens  *bearer.Tokens
	sess    *sessions
	lim     *limiter
	pages   map[string]*template.Template
	static  fs.FS
	metrics fasthttp.RequestHandler
	probe   *http.Client
	// bcrypt is slow on purpose; bound how many run at once so sign-in
	// attempts cannot take all CPUs.
	hashing chan struct{}
	srv     *fastserve.Server
}

// New checks o, registers the state metrics with o.Registry and builds the
// server; it does no I/O.
func New(o Options) (*Server, error) {
	if o.Registry == nil {
		return nil, errors.New("ui: a metrics registry is required")
	}
	if o.MetricsAuth == "" {
		o.MetricsAuth = MetricsAuthToken
	}
	if o.MetricsAuth != MetricsAuthToken && o.MetricsAuth != MetricsAuthNone {
		return nil, fmt.Errorf("ui: metrics auth %q is neither %q nor %q", o.MetricsAuth, MetricsAuthToken, MetricsAuthNone)
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 30 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Secure == nil {
		o.Secure = func() bool { return false }
	}
	tokens, err := bearer.ParseDigests(o.TokenSHA256)
	if err != nil {
		return nil, fmt.Errorf("ui: admin tokens: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static assets: %w", err)
	}
	s := &Server{
		o: o, log: o.Logger, tokens: tokens, pages: pages, static: static,
		sess:    &sessions{m: map[string]*session{}, idle: o.SessionTimeout, now: o.Now},
		lim:     &limiter{fails: map[netip.Addr][]time.Time{}, now: o.Now},
		probe:   o.ProbeClient,
		hashing: make(chan struct{}, 2),
	}
	if s.probe == nil {
		s.probe = &http.Client{Timeout: 5 * time.Second}
	}
	if err := o.Registry.Register(newStateCollector(func() *Status { return s.status(false) })); err != nil {
		return nil, fmt.Errorf("ui: register state metrics: %w", err)
	}
	s.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{ErrorLog: slogPrinter{o.Logger}}))
	s.srv = fastserve.New(fastserve.Config{
		Name:           "duo-confidential-admin",
		Handler:        s.Handle,
		Logger:         o.Logger,
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxRequestBody: maxRequestBody,
		// Pages and the status API are cheap; the cap only bounds a flood.
		MaxInFlight: 64,
	})
	return s, nil
}

// maxRequestBody bounds a request body (sign-in and key forms are small).
const maxRequestBody = 64 << 10

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections and waits for open ones until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// status builds the status document, with traffic when asked for.
func (s *Server) status(withTraffic bool) *Status {
	var tr *Traffic
	if withTraffic {
		t, err := gatherTraffic(s.o.Registry)
		if err != nil {
			s.log.Warn("traffic metrics", "error", err)
		}
		tr = t
	}
	return buildStatus(s.o.Sources, s.o.Now(), tr)
}

// Handle is the admin listener's request handler.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	securityHeaders(ctx)
	if !s.allowedAddr(ctx) {
		ctx.Error("Forbidden: this address is not in admin.allowed_networks", fasthttp.StatusForbidden)
		return
	}
	path := string(ctx.Path())
	switch {
	case strings.HasPrefix(path, "/static/"):
		s.serveStatic(ctx, strings.TrimPrefix(path, "/static/"))
	case path == "/":
		redirect(ctx, "/admin/")
	case path == "/login":
		s.handleLogin(ctx)
	case path == "/logout":
		s.handleLogout(ctx)
	case path == "/metrics":
		s.handleMetrics(ctx)
	case path == "/api/status":
		s.handleAPIStatus(ctx)
	case path == "/admin" || strings.HasPrefix(path, "/admin/"):
		s.handleAdmin(ctx, path)
	default:
		ctx.Error("Not Found", fasthttp.StatusNotFound)
	}
}

// securityHeaders forbid framing, inline scripts and styles, and caching.
func securityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// allowedAddr applies admin.allowed_networks to the client's address (the
// TCP peer; forwarding headers are not believed).
func (s *Server) allowedAddr(ctx *fasthttp.RequestCtx) bool {
	if len(s.o.AllowedNetworks) == 0 {
		return true
	}
	a := clientAddr(ctx)
	for _, p := range s.o.AllowedNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

func (s *Server) serveStatic(ctx *fasthttp.RequestCtx, name string) {
	b, err := fs.ReadFile(s.static, name)
	if err != nil || strings.Contains(name, "/") {
		ctx.Error("Not Found", fasthttp.StatusNotFound)
		return
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		ctx.SetContentType("text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		ctx.SetContentType("text/javascript; charset=utf-8")
	default:
		ctx.SetContentType("application/octet-stream")
	}
	ctx.Response.Header.Set("Cache-Control", "private, max-age=300")
	ctx.SetBody(b)
}

// bearerOK reports whether the request carries an admin API token.
func (s *Server) bearerOK(ctx *fasthttp.RequestCtx) bool {
	return s.tokens.Enabled() && s.tokens.Allow(ctx.Request.Header.Peek("Authorization"))
}

func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if s.o.MetricsAuth != MetricsAuthNone && !s.bearerOK(ctx) && s.currentSession(ctx) == nil {
		unauthorized(ctx)
		return
	}
	s.metrics(ctx)
	// promhttp's headers replace ours through the adaptor; restore them.
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
}

func unauthorized(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="duo-confidential admin"`)
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusUnauthorized)
	ctx.SetBodyString(`{"error":"sign in, or send an admin token as Authorization: Bearer <token>"}`)
}

// slogPrinter routes library messages into slog at debug level.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.l.Debug("admin http server", "msg", fmt.Sprintf(format, args...))
}

func (p slogPrinter) Println(args ...any) {
	p.l.Warn("metrics", "msg", fmt.Sprint(args...))
}
