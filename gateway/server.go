package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/valyala/fasthttp"
)

// Model is what the gateway needs of a language model; *model.Client
// implements it over the in-process proxy.
type Model interface {
	Chat(ctx context.Context, r model.ChatRequest) (model.Result, error)
	ChatStream(ctx context.Context, r model.ChatRequest, onDelta func(text string) error) (model.Result, error)
	Complete(ctx context.Context, r model.CompletionRequest) (model.Result, error)
	CompleteStream(ctx context.Context, r model.CompletionRequest, onDelta func(text string) error) (model.Result, error)
}

// Validator authenticates GitLab requests; *auth.Validator implements it.
type Validator interface {
	Validate(ctx context.Context, r auth.Request) (*auth.Claims, error)
}

// TokenSigner mints direct-access tokens for POST /v1/code/user_access_token;
// it returns the signer of the current signing key, or an error when there
// is none.
type TokenSigner func() (*auth.Signer, error)

// Timeouts bound each kind of model call inside GitLab's own limits.
type Timeouts struct {
	// Completions: Workhorse gives up after 55 s (default 30s).
	Completions time.Duration
	// Generations: also through Workhorse (default 50s).
	Generations time.Duration
	// Chat: one ReAct step; GitLab's AI gateway timeout is 60–600 s
	// (default 60s).
	Chat time.Duration
	// Prompts: /v1/prompts/<feature> and legacy /v1/chat/* (default 60s).
	Prompts time.Duration
	// Check: the Test connection button waits 3 s (default 2.5s).
	Check time.Duration
}

// Options configures a Server. Validator, Model and Models are required.
type Options struct {
	Validator Validator
	Model     Model
	Models    *Models
	// Signer issues direct-access tokens; nil refuses them with GitLab's 500
	// "Failed to generate JWT".
	Signer TokenSigner
	// LocalJWKS returns the public JWKS of the gateway's own token keys,
	// served at GET /.well-known/jwks.json; nil serves none.
	LocalJWKS func() ([]byte, error)
	// Ready reports whether the gateway can serve Duo requests and, if not,
	// why (GitLab keys, attestation, models); nil means always ready.
	Ready func() (bool, string)
	// Notice is shown by /monitoring/ready (sandbox mode says NOT
	// CONFIDENTIAL there).
	Notice string
	// Warning, when set and non-empty, is shown by /monitoring/ready as
	// something to look at that does not make the gateway unready (GitLab
	// drift). It is public: say what, never details.
	Warning  func() string
	Timeouts Timeouts
	// MaxRequestBody bounds request bodies (default 8 MiB; Rails caps code
	// suggestion bodies at 600 kB, chat carries more context).
	MaxRequestBody int
	// MaxInFlight caps requests and streams served at once; more are
	// answered 503 with Retry-After. Default fastserve.DefaultMaxInFlight.
	MaxInFlight int
	ReadTimeout time.Duration // request headers and body (default 60s)
	IdleTimeout time.Duration // keep-alive (default 120s)
	Logger      *slog.Logger
	Now         func() time.Time
	// Metrics receives per-request observations; nil records none.
	Metrics Metrics
}

// headerBufferSize bounds the request line and headers: twice the largest
// bearer token auth accepts.
const headerBufferSize = 2 * auth.DefaultMaxTokenBytes

// Server is the AI-Gateway-compatible HTTP front end.
type Server struct {
	o        Options
	log      *slog.Logger
	srv      *fastserve.Server
	routes   map[string]*route
	inflight atomic.Int64
	streams  atomic.Int64
	// drainOver is closed when Shutdown's drain time is up: model calls
	// and streams still running are cancelled then, not when the drain
	// starts, so a rolling restart lets them finish.
	drainOver chan struct{}
	drainOnce sync.Once
}

// New checks o and builds a Server; it does no I/O.
func New(o Options) (*Server, error) {
	if o.Validator == nil || o.Model == nil || o.Models == nil {
		return nil, errors.New("gateway: Validator, Model and Models are required")
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defD(&o.Timeouts.Completions, 30*time.Second)
	defD(&o.Timeouts.Generations, 50*time.Second)
	defD(&o.Timeouts.Chat, 60*time.Second)
	defD(&o.Timeouts.Prompts, 60*time.Second)
	defD(&o.Timeouts.Check, 2500*time.Millisecond)
	defD(&o.ReadTimeout, 60*time.Second)
	defD(&o.IdleTimeout, 120*time.Second)
	if o.MaxRequestBody <= 0 {
		o.MaxRequestBody = 8 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, log: o.Logger, drainOver: make(chan struct{})}
	s.routes = s.routeTable()
	s.srv = fastserve.New(fastserve.Config{
		Name:    "duo-confidential",
		Handler: s.Handle,
		Answer: func(ctx *fasthttp.RequestCtx, f fastserve.Failure) {
			writeError(ctx, errorf(f.Status, f.Message, nil))
		},
		Logger: o.Logger,
		// Streams are bounded by the model client's idle-progress
		// watchdog and the per-feature timeouts, not a write cap.
		ReadTimeout:    o.ReadTimeout,
		IdleTimeout:    o.IdleTimeout,
		MaxRequestBody: o.MaxRequestBody,
		// Rails' tokens list every unit primitive and come with a dozen
		// X-Gitlab-* headers; fasthttp's 4 KiB default would refuse some.
		ReadBufferSize: headerBufferSize,
		MaxInFlight:    o.MaxInFlight,
	})
	return s, nil
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections and waits, until ctx is done, for
// in-flight requests and streams to finish; when ctx is done first, the
// model calls and streams still running are cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.endDrain)
	defer stop()
	err := s.srv.Shutdown(ctx)
	s.endDrain()
	return err
}

// endDrain cancels every model call and stream still running.
func (s *Server) endDrain() { s.drainOnce.Do(func() { close(s.drainOver) }) }

// InFlight reports requests being handled and streams being written.
func (s *Server) InFlight() (requests, streams int64) {
	return s.inflight.Load(), s.streams.Load()
}

// Handle is the gateway's request handler (for in-process servers and
// benchmarks).
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	c := &call{ctx: ctx, s: s, started: s.o.Now()}
	path := string(ctx.Path())
	rt, ok := s.routes[path]
	if !ok {
		rt = s.lookupPrefix(path)
	}
	err := s.serve(c, rt, path)
	if stop := c.takeClientStop(); stop != nil {
		stop() // before fasthttp reads the connection again
	}
	if err != nil {
		s.logError(c, rt, err)
		writeError(ctx, err)
	}
	s.observe(c, rt)
}

// serve authenticates (unless the route is public), checks the method and
// the scope, and runs the handler. Like GitLab's gateway, authentication
// comes before routing: an unknown path without a token is a 401.
func (s *Server) serve(c *call, rt *route, path string) error {
	if rt == nil || !rt.public {
		claims, err := s.o.Validator.Validate(context.Background(), auth.RequestFromHeaders(c.header))
		if err != nil {
			return err
		}
		c.claims = claims
	}
	if rt == nil {
		return errorf(fasthttp.StatusNotFound, detailNotFound, nil)
	}
	c.route = rt
	if !rt.allows(c.ctx.Method()) {
		c.ctx.Response.Header.Set("Allow", strings.Join(rt.methods, ", "))
		return errorf(fasthttp.StatusMethodNotAllowed, detailMethod, nil)
	}
	if !rt.public {
		if err := rt.authorize(c.claims); err != nil {
			return err
		}
	}
	c.suffix = strings.TrimPrefix(path, rt.path)
	return rt.handle(c)
}

// logError logs a failed request: client mistakes at debug, the rest at
// warn. Never prompt text: errors carry only our own messages.
func (s *Server) logError(c *call, rt *route, err error) {
	name := "unknown"
	if rt != nil {
		name = rt.name
	}
	status := 0
	var ae *auth.Error
	if errors.As(err, &ae) {
		status = ae.Status
	} else {
		status = asError(err).Status
	}
	level := slog.LevelWarn
	if status < 500 {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "request failed", "route", name, "status", status,
		"request_id", c.requestID(), "error", err.Error())
}
