package proxy

import (
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Metrics receives the proxy's per-request observations. Route is a
// template from a fixed set (RouteLabels), never a raw path, so label
// cardinality stays bounded. Implementations must be safe for concurrent
// use; Options.Metrics nil records nothing.
type Metrics interface {
	// ObserveRequest records one finished request: HTTP status, total time
	// until the answer was complete (for a stream: its last event), and
	// overhead, the part of the time before the answer started that the
	// proxy spent itself (parsing, encryption, decryption), not waiting
	// for the backend.
	ObserveRequest(route string, status int, total, overhead time.Duration)
	// StreamStarted and StreamEnded bracket one relayed event stream.
	StreamStarted(route string)
	StreamEnded(route string)
}

// RouteLabels lists every value ObserveRequest's route can take.
func RouteLabels() []string {
	out := []string{"/healthz", "/readyz", "/v1/models", "/v1/models/{id}", "other"}
	for p := range routes {
		out = append(out, p)
	}
	return out
}

// routeLabel maps a request path to its route template.
func routeLabel(path string) string {
	switch {
	case routes[path] != nil, path == "/healthz", path == "/readyz", path == "/v1/models":
		return path
	case strings.HasPrefix(path, "/v1/models/"):
		return "/v1/models/{id}"
	}
	return "other"
}

// timing follows one request: when it started and how long it waited for
// the backend. A stream's observation is made by the stream writer, after
// the handler has returned.
type timing struct {
	start    time.Time
	upstream time.Duration
	route    string
	streamed bool
	rec      receiptState
}

// wait adds the time since t to the backend wait.
func (tm *timing) wait(t time.Time) {
	if tm != nil {
		tm.upstream += time.Since(t)
	}
}

// overhead is the time until now not spent waiting for the backend.
func (tm *timing) overhead(now time.Time) time.Duration {
	return max(now.Sub(tm.start)-tm.upstream, 0)
}

// observe records a request whose answer is complete when the handler
// returns (everything but relayed streams).
func (s *Server) observe(ctx *fasthttp.RequestCtx, tm *timing) {
	if s.o.Metrics == nil || tm.streamed {
		return
	}
	now := time.Now()
	s.o.Metrics.ObserveRequest(tm.route, ctx.Response.StatusCode(), now.Sub(tm.start), tm.overhead(now))
}

// streamMetrics marks tm as a stream and returns what the stream writer
// calls when the stream ends: the observation is made then, with the
// overhead measured now, before the first event.
func (s *Server) streamMetrics(tm *timing, status int) func() {
	tm.streamed = true
	m := s.o.Metrics
	if m == nil {
		return func() {}
	}
	overhead, start, route := tm.overhead(time.Now()), tm.start, tm.route
	m.StreamStarted(route)
	return func() {
		m.StreamEnded(route)
		m.ObserveRequest(route, status, time.Since(start), overhead)
	}
}
