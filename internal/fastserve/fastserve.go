// Package fastserve is the one fasthttp server setup every HTTP listener of
// the appliance uses (proxy, gateway, admin, sandbox): limits and timeouts,
// request bodies kept in memory (no multipart pre-parsing, no temp files),
// a log that never carries request bytes, a cap on requests in flight
// answered fast with 503 and Retry-After, error answers the client can read
// before the connection closes, and a race-free Serve/Shutdown pair.
//
// fasthttp's ShutdownWithContext returns at once when no listener has been
// registered yet, and a Serve that starts afterwards then accepts
// connections forever. Every listener in the appliance starts Serve in a
// goroutine and may be told to stop before that goroutine runs (a fast
// test, a SIGTERM during start-up), so Server closes that race too.
package fastserve

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Failure is a request the server answers itself, before or instead of the
// handler: a malformed or oversized request, or one over the in-flight cap.
// Message is ours and never contains request bytes.
type Failure struct {
	Status  int
	Message string
	// RetryAfter is set on overload; Answer need not write it, the server
	// sets the Retry-After header after Answer returns.
	RetryAfter time.Duration
}

// Config describes one listener. Zero sizes and durations take the defaults
// named beside them.
type Config struct {
	// Name is sent as the Server header and names the listener in logs.
	Name    string
	Handler fasthttp.RequestHandler
	// Answer writes f in the listener's own error shape (OpenAI JSON,
	// GitLab's {"detail"}, plain text); nil writes plain text.
	Answer func(ctx *fasthttp.RequestCtx, f Failure)
	Logger *slog.Logger

	MaxRequestBody int // default 4 MiB; bodies are read into memory up to this
	ReadBufferSize int // request line and headers; default 8 KiB
	ReadTimeout    time.Duration
	// WriteTimeout caps writing one response; 0 leaves streams unbounded
	// (they have their own idle-progress timeouts).
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxInFlight caps requests handled at once, streams included until
	// they end (see Detach); default 2048. Requests over it get 503 with
	// Retry-After at once, as do connections over MaxConnsPerInFlight
	// times it (before any of their bytes are read).
	MaxInFlight int
	// RetryAfter is the Retry-After of an overload answer; default 1s.
	RetryAfter time.Duration
}

// Server wraps a fasthttp.Server set up from a Config.
type Server struct {
	srv    *fasthttp.Server
	cfg    Config
	slots  chan struct{}
	log    *slog.Logger
	linger lingerOptions

	// open counts connections being served; past MaxConnsPerInFlight ×
	// MaxInFlight new ones are refused before fasthttp reads anything, so
	// bodies read ahead of the in-flight cap stay bounded too.
	open     atomic.Int64
	refusing chan struct{} // slots for refused connections lingering

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
}

// MaxConnsPerInFlight is how many open connections a listener serves per
// in-flight slot (keep-alive connections idle most of the time).
const MaxConnsPerInFlight = 4

// New builds the server of c.
func New(c Config) *Server {
	if c.MaxRequestBody <= 0 {
		c.MaxRequestBody = 4 << 20
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 8 << 10
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Answer == nil {
		c.Answer = answerText
	}
	s := &Server{
		cfg:   c,
		slots: make(chan struct{}, c.MaxInFlight),
		// Refused connections linger (answer, drain, close) at most this
		// many at a time; beyond, they are closed at once.
		refusing: make(chan struct{}, 64),
		log:      c.Logger.With("listener", c.Name),
		linger:   defaultLinger,
	}
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.connError,
		Logger:                quietLogger{s.log},
		Name:                  c.Name,
		NoDefaultServerHeader: true,
		ReadTimeout:           c.ReadTimeout,
		WriteTimeout:          c.WriteTimeout,
		IdleTimeout:           c.IdleTimeout,
		MaxRequestBodySize:    c.MaxRequestBody,
		ReadBufferSize:        c.ReadBufferSize,
		// A multipart body is a prompt or an audio file: fasthttp would
		// parse it before the handler and spill bodies over 16 MiB to
		// $TMPDIR in cleartext. Handlers read bodies themselves.
		DisablePreParseMultipartForm: true,
		// Bodies are read into memory, bounded by MaxRequestBodySize.
		StreamRequestBody: false,
		// fasthttp's error texts quote request bytes; ours never do, but
		// keep its own messages short as well.
		SecureErrorLogMessage: true,
		CloseOnShutdown:       true,
	}
	return s
}

// DefaultMaxInFlight is the in-flight cap when Config.MaxInFlight is 0.
const DefaultMaxInFlight = 2048

// answerText is the default Answer: the status text and our message.
func answerText(ctx *fasthttp.RequestCtx, f Failure) {
	ctx.Error(fasthttp.StatusMessage(f.Status)+": "+f.Message, f.Status)
}

// Serve answers requests on ln until Shutdown; after Shutdown it closes ln
// and returns nil at once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	return s.srv.Serve(&lingerListener{Listener: ln, opts: &s.linger, open: &s.open,
		maxOpen: int64(MaxConnsPerInFlight * s.cfg.MaxInFlight), refusing: s.refusing, retryAfter: s.cfg.RetryAfter})
}

// Shutdown stops every listener, current and future, and waits until open
// connections close or ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	s.mu.Unlock()
	err := s.srv.ShutdownWithContext(ctx)
	// A Serve that registered its listener with us but not yet with
	// fasthttp is still about to Accept: closing the listener ends it.
	// fasthttp has already closed the others, so errors here say nothing.
	for _, ln := range lns {
		_ = ln.Close()
	}
	return err
}

// InFlight reports the requests holding a slot now (streams included).
func (s *Server) InFlight() int { return len(s.slots) }

// slot is one request's hold on the in-flight cap.
type slot struct {
	s        *Server
	detached bool
	once     sync.Once
}

func (sl *slot) release() { sl.once.Do(func() { <-sl.s.slots }) }

// slotKey is the user-value key of a request's slot.
type slotKey struct{}

// handle admits the request under the in-flight cap and runs the handler.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	select {
	case s.slots <- struct{}{}:
	default:
		s.refuse(ctx, Failure{Status: fasthttp.StatusServiceUnavailable,
			Message: "too many requests in flight on this listener; retry shortly", RetryAfter: s.cfg.RetryAfter})
		return
	}
	sl := &slot{s: s}
	ctx.SetUserValue(slotKey{}, sl)
	defer func() {
		if !sl.detached {
			sl.release()
		}
	}()
	s.cfg.Handler(ctx)
}

// Detach keeps the request's in-flight slot after the handler returns, for
// a response body written later (a stream): call the returned func when
// the stream ends. Outside a Server it returns a no-op.
func Detach(ctx *fasthttp.RequestCtx) (done func()) {
	sl, ok := ctx.UserValue(slotKey{}).(*slot)
	if !ok {
		return func() {}
	}
	sl.detached = true
	return sl.release
}

// refuse answers f, with Retry-After when set.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, f Failure) {
	s.cfg.Answer(ctx, f)
	if f.RetryAfter > 0 {
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(secs))
	}
}
