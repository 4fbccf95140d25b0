package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// Platforms Options.Platform accepts.
const (
	PlatformTDX = "tdx"
	PlatformSNP = "sev-snp"
)

// Banner is the label every sandbox announces itself with.
const Banner = "sandbox backend: NOT CONFIDENTIAL, test-signed evidence"

// Defaults for the zero values of Options.
const (
	DefaultFaultDelay = time.Second
	DefaultRecordSize = 256
	DefaultSecretTTL  = time.Hour
	// MaxRecordedBody caps the bytes Requests keeps of one request body.
	MaxRecordedBody = 64 << 10
	// MaxRequestBody is the largest request the sandbox reads (the real
	// server allows 128 MiB; 64 MiB covers any test and bounds memory).
	MaxRequestBody = 64 << 20
)

// Options configure a sandbox Server. The zero value is a TDX sandbox that
// answers as fast as possible.
type Options struct {
	// Platform selects the evidence /privatemode/v1/attest returns: "tdx"
	// (default) or "sev-snp".
	Platform string
	// TokensPerSecond paces streamed tokens; 0 means as fast as possible.
	TokensPerSecond float64
	// FixedSecret, if set, is accepted on inference routes without an
	// exchange (interop and benchmark mode; only a sandbox may accept
	// such a secret). Exchanged secrets keep working alongside it.
	FixedSecret *envelope.Secret
	// Plaintext makes the inference routes accept and return plaintext
	// OpenAI JSON and SSE without envelopes: the benchmark baseline.
	// Responses carry Privatemode-Encrypted: false.
	Plaintext bool
	// FaultDelay is how long FaultDelay holds back the first byte
	// (default DefaultFaultDelay).
	FaultDelay time.Duration
	// SecretTTL is how long an exchanged secret stays valid (default one
	// hour, as the real secret service's etcd lease).
	SecretTTL time.Duration
	// RecordSize is the capacity of the Requests ring: 0 means
	// DefaultRecordSize, negative disables recording.
	RecordSize int
	// Logger receives the startup banner and request errors (default
	// slog.Default()).
	Logger *slog.Logger
	// Now is the clock for certificates and secret expiry (default
	// time.Now).
	Now func() time.Time
}

// Server is a sandbox backend. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	backend  *attesttest.Backend
	exchange exchanger
	interval time.Duration // between streamed tokens; 0 = no pacing
	fixed    *envelope.Secret

	secrets   sync.Map // secret ID → *storedSecret
	exchanges atomic.Uint64
	fault     atomic.Pointer[faultState]
	rec       *recorder
	keys      keyLog

	srv       *fastserve.Server
	done      chan struct{}
	closeOnce sync.Once
}

// New creates a sandbox with fresh test CAs, evidence and a mesh leaf.
func New(o Options) (*Server, error) {
	switch o.Platform {
	case "":
		o.Platform = PlatformTDX
	case PlatformTDX, PlatformSNP:
	default:
		return nil, fmt.Errorf("sandbox: unknown platform %q (want %q or %q)", o.Platform, PlatformTDX, PlatformSNP)
	}
	if o.TokensPerSecond < 0 {
		return nil, errors.New("sandbox: TokensPerSecond must not be negative")
	}
	if o.FaultDelay <= 0 {
		o.FaultDelay = DefaultFaultDelay
	}
	if o.SecretTTL <= 0 {
		o.SecretTTL = DefaultSecretTTL
	}
	if o.RecordSize == 0 {
		o.RecordSize = DefaultRecordSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b, err := attesttest.NewBackend(o.Now())
	if err != nil {
		return nil, fmt.Errorf("sandbox: test backend: %w", err)
	}
	ex, err := newExchanger(b, o.SecretTTL)
	if err != nil {
		return nil, fmt.Errorf("sandbox: secret responder: %w", err)
	}
	s := &Server{
		opts:     o,
		log:      o.Logger.With("component", "sandbox", "confidential", false),
		now:      o.Now,
		backend:  b,
		exchange: ex,
		rec:      newRecorder(o.RecordSize),
		done:     make(chan struct{}),
	}
	if o.FixedSecret != nil {
		fs := *o.FixedSecret
		s.fixed = &fs
	}
	if o.TokensPerSecond > 0 {
		s.interval = time.Duration(float64(time.Second) / o.TokensPerSecond)
	}
	s.srv = fastserve.New(fastserve.Config{
		Name:    "duo-confidential-sandbox",
		Handler: s.Handler(),
		Logger:  s.log,
		// WriteTimeout stays 0: it would cover a whole SSE stream.
		ReadTimeout:    time.Minute,
		IdleTimeout:    time.Minute,
		MaxRequestBody: MaxRequestBody,
	})
	return s, nil
}

// Backend returns the test backend behind /attest, so a proxy under test
// can be given the matching roots, collateral and manifest.
func (s *Server) Backend() *attesttest.Backend { return s.backend }

// Manifest returns the manifest the sandbox's evidence matches on its
// platform.
func (s *Server) Manifest() []byte {
	if s.opts.Platform == PlatformSNP {
		return s.backend.SNPManifest
	}
	return s.backend.TDXManifest
}

// Serve serves the sandbox on ln until Shutdown. It logs the banner first.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Warn(Banner, "addr", ln.Addr().String(), "platform", s.opts.Platform,
		"plaintext", s.opts.Plaintext, "fixed_secret", s.fixed != nil)
	return s.srv.Serve(ln)
}

// Shutdown stops pending delays and token pacing, ends open streams and
// waits for connections to close or ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.done) })
	return s.srv.Shutdown(ctx)
}

// Handler returns the sandbox's request handler, for in-process servers.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Route paths.
const (
	pathAttest         = "/privatemode/v1/attest"
	pathSecret         = "/privatemode/v1/secret"
	pathModels         = "/v1/models"
	pathChat           = "/v1/chat/completions"
	pathCompletions    = "/v1/completions"
	pathEmbeddings     = "/v1/embeddings"
	pathMessages       = "/v1/messages"
	pathTranscriptions = "/v1/audio/transcriptions"
)

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	s.rec.record(ctx)
	ctx.Response.Header.Set("X-Sandbox", "NOT CONFIDENTIAL")
	path := ctx.Path()
	switch string(path) {
	case pathAttest:
		if s.method(ctx, fasthttp.MethodPost) {
			s.handleAttest(ctx)
		}
	case pathSecret:
		if s.method(ctx, fasthttp.MethodPost) {
			s.handleSecret(ctx)
		}
	case pathModels:
		if s.method(ctx, fasthttp.MethodGet) {
			s.handleModels(ctx, "")
		}
	case pathChat, pathCompletions, pathEmbeddings, pathMessages, pathTranscriptions:
		if s.method(ctx, fasthttp.MethodPost) {
			s.handleInference(ctx, routeFor(path))
		}
	default:
		if id, ok := bytes.CutPrefix(path, []byte(pathModels+"/")); ok && len(id) > 0 {
			if s.method(ctx, fasthttp.MethodGet) {
				s.handleModels(ctx, string(id))
			}
			return
		}
		protocolError(ctx, fasthttp.StatusNotImplemented, "sandbox: route "+string(path)+" is not implemented")
	}
}

func (s *Server) method(ctx *fasthttp.RequestCtx, m string) bool {
	if string(ctx.Method()) == m {
		return true
	}
	ctx.Response.Header.Set("Allow", m)
	protocolError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
	return false
}

// stopping reports whether Shutdown has begun.
func (s *Server) stopping() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// sleep waits d or until Shutdown; it reports whether the full time passed.
func (s *Server) sleep(t *time.Timer, d time.Duration) bool {
	t.Reset(d)
	select {
	case <-t.C:
		return true
	case <-s.done:
		t.Stop()
		return false
	}
}
