// Package fastserve runs a fasthttp.Server so that Shutdown is safe at any
// moment, including before Serve has started.
//
// fasthttp's ShutdownWithContext returns at once when no listener has been
// registered yet, and a Serve that starts afterwards then accepts
// connections forever. Every listener in the appliance starts Serve in a
// goroutine and may be told to stop before that goroutine runs (a fast
// test, a SIGTERM during start-up), so the race is real.
package fastserve

import (
	"context"
	"net"
	"sync"

	"github.com/valyala/fasthttp"
)

// Server wraps a fasthttp.Server with a race-free Serve/Shutdown pair.
type Server struct {
	srv *fasthttp.Server

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
}

// New wraps srv; srv must not be served by other means.
func New(srv *fasthttp.Server) *Server { return &Server{srv: srv} }

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
	return s.srv.Serve(ln)
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
