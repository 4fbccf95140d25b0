package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// Secrets supplies the inference secret of the attested backend. Current
// never blocks on the network; Invalidate replaces a secret the backend no
// longer knows with a fresh exchange.
type Secrets interface {
	Current() (envelope.Secret, error)
	Invalidate(ctx context.Context, staleID string) (envelope.Secret, error)
}

// CacheSaltMode says how cache_salt is chosen for requests without one.
type CacheSaltMode int

// Cache salt modes.
const (
	// CacheSaltPerRequest injects a fresh random salt per request: no
	// prefix-cache sharing between requests (upstream's default).
	CacheSaltPerRequest CacheSaltMode = iota
	// CacheSaltShared injects one configured salt and sends the shard key,
	// so requests with a common prefix can reuse the backend's cache.
	CacheSaltShared
)

// Options configures a Server. Zero durations and sizes take the defaults
// named beside them.
type Options struct {
	// Upstream is the Privatemode API base URL (https; http only when
	// AllowInsecureUpstream, which only sandbox mode sets).
	Upstream              string
	AllowInsecureUpstream bool
	APIKey                string
	Secrets               Secrets
	// Tokens, when enabled, are required as inbound bearer tokens.
	Tokens *bearer.Tokens

	CacheSaltMode CacheSaltMode
	SharedSalt    string // CacheSaltShared: at least 32 characters
	// StrictOCSP accepts only GPU certificates whose NVIDIA OCSP status is
	// good; otherwise "unknown" and "revoked within the last 48 hours" are
	// accepted too (upstream's default).
	StrictOCSP bool
	// PlatformHeaders sends Privatemode-OS and Privatemode-Architecture
	// like the upstream proxy; off by default to send less metadata.
	PlatformHeaders bool

	MaxRequestBody    int           // default 32 MiB
	MaxResponseBody   int           // non-streaming upstream bodies; default 64 MiB
	MaxEventSize      int           // one SSE event; default 8 MiB
	ReadTimeout       time.Duration // inbound request headers and body; default 60s
	IdleTimeout       time.Duration // inbound keep-alive; default 120s
	UpstreamTimeout   time.Duration // until upstream response headers; default 10m
	StreamIdleTimeout time.Duration // no upstream progress in a stream; default 2m
	// MaxInFlight caps requests and streams served at once; more are
	// answered 503 with Retry-After. Default fastserve.DefaultMaxInFlight.
	MaxInFlight int

	// HTTPClient carries outbound TLS roots, proxy settings and dial
	// timeouts; nil builds a default one.
	HTTPClient *http.Client
	// ClientVersion is sent as Privatemode-Version (protocol compatibility).
	ClientVersion string
	Logger        *slog.Logger
	// Ready reports readiness and, when not ready, why (for /readyz);
	// nil means ready whenever a secret is available.
	Ready func() (bool, string)
	// Notice, when set, is shown in /readyz (sandbox mode says NOT
	// CONFIDENTIAL there, so no status page can miss it).
	Notice string
	// Metrics receives per-request observations; nil records none.
	Metrics Metrics
	// Receipts receives one record per inference request; nil keeps none.
	Receipts ReceiptSink
}

// Server is the attesting encryption proxy's HTTP front.
type Server struct {
	o        Options
	base     *url.URL
	client   *http.Client
	log      *slog.Logger
	srv      *fastserve.Server
	inflight atomic.Int64
	streams  atomic.Int64
	closing  atomic.Bool
}

// ProtocolVersion is the Privatemode client version we are wire-compatible
// with; the API gates behaviour on it.
const ProtocolVersion = "v1.40.0"

// New checks the options and builds a Server.
func New(o Options) (*Server, error) {
	if o.Secrets == nil {
		return nil, errors.New("proxy: no secret source")
	}
	base, err := url.Parse(strings.TrimRight(o.Upstream, "/"))
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("proxy: upstream %q is not a URL", o.Upstream)
	}
	if base.Scheme != "https" && !(base.Scheme == "http" && o.AllowInsecureUpstream) {
		return nil, fmt.Errorf("proxy: upstream %q must use https", o.Upstream)
	}
	if o.CacheSaltMode == CacheSaltShared && len(o.SharedSalt) < 32 {
		return nil, errors.New("proxy: the shared cache salt must be at least 32 characters")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxRequestBody, 32<<20)
	def(&o.MaxResponseBody, 64<<20)
	def(&o.MaxEventSize, 8<<20)
	defD(&o.ReadTimeout, 60*time.Second)
	defD(&o.IdleTimeout, 120*time.Second)
	defD(&o.UpstreamTimeout, 10*time.Minute)
	defD(&o.StreamIdleTimeout, 2*time.Minute)
	if o.ClientVersion == "" {
		o.ClientVersion = ProtocolVersion
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	s := &Server{o: o, base: base, client: upstreamClient(client, o.UpstreamTimeout), log: o.Logger}
	s.srv = fastserve.New(fastserve.Config{
		Name:    "duo-confidential",
		Handler: s.Handle,
		Answer:  answerFailure,
		Logger:  o.Logger,
		// WriteTimeout would cap whole streams; streams have their own
		// idle-progress timeout instead.
		ReadTimeout:    o.ReadTimeout,
		IdleTimeout:    o.IdleTimeout,
		MaxRequestBody: o.MaxRequestBody,
		ReadBufferSize: readBufferSize,
		MaxInFlight:    o.MaxInFlight,
	})
	return s, nil
}

// upstreamClient returns a copy of c whose transport waits at most timeout
// for response headers. The client has no overall timeout: streams are
// bounded by their idle-progress timeout instead.
func upstreamClient(c *http.Client, timeout time.Duration) *http.Client {
	cc := *c
	cc.Timeout = 0
	if t, ok := c.Transport.(*http.Transport); ok {
		t = t.Clone()
		t.ResponseHeaderTimeout = timeout
		t.MaxIdleConnsPerHost = 256
		// An encrypted request is about twice its plaintext (hex
		// ciphertext): with the default 4 KiB buffer a 4 KB chat request
		// took two write calls; 16 KiB sends up to ~7 KB of plaintext in
		// one.
		if t.WriteBufferSize < 16<<10 {
			t.WriteBufferSize = 16 << 10
		}
		t.ForceAttemptHTTP2 = true
		cc.Transport = t
	}
	// Redirects would carry our API key elsewhere.
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and waits, until ctx is done, for
// in-flight requests and streams to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	return s.srv.Shutdown(ctx)
}

// InFlight reports requests being handled and streams being relayed.
func (s *Server) InFlight() (requests, streams int64) {
	return s.inflight.Load(), s.streams.Load()
}

// readBufferSize bounds an inbound request's head (request line and
// headers); a larger one is refused with 431.
const readBufferSize = 16 << 10

// answerFailure answers a request the listener refused itself (malformed,
// oversized, over the in-flight cap) in OpenAI's shape.
func answerFailure(ctx *fasthttp.RequestCtx, f fastserve.Failure) {
	typ := errInvalidRequest
	if f.Status == fasthttp.StatusServiceUnavailable {
		typ = errUnavailable
	}
	writeError(ctx, newAPIError(f.Status, typ, f.Message, nil))
}
