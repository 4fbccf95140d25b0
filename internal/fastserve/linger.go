package fastserve

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// lingerOptions bound how much a connection closed after an error answer
// still reads (and discards) so the client can read the answer.
type lingerOptions struct {
	maxBytes int64
	maxTime  time.Duration
}

// defaultLinger drains up to 64 MiB for up to 2 s: enough for a client to
// finish sending an oversized body over a LAN and read our 413, bounded so
// a client cannot hold a worker.
var defaultLinger = lingerOptions{maxBytes: 64 << 20, maxTime: 2 * time.Second}

// lingerListener wraps every accepted connection in a lingerConn and
// refuses connections over maxOpen with a readable 503.
type lingerListener struct {
	net.Listener
	opts       *lingerOptions
	open       *atomic.Int64
	maxOpen    int64
	refusing   chan struct{}
	retryAfter time.Duration
}

// Accept wraps the next connection; a TLS connection stays visible as TLS
// to fasthttp (RequestCtx.IsTLS).
func (l *lingerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.maxOpen {
			l.open.Add(-1)
			l.refuse(c)
			continue
		}
		lc := &lingerConn{Conn: c, opts: l.opts, open: l.open}
		if tc, ok := c.(*tls.Conn); ok {
			return &lingerTLSConn{lingerConn: lc, tc: tc}, nil
		}
		return lc, nil
	}
}

// refuse answers a connection over the cap with 503 and Retry-After and
// closes it gracefully in the background, a bounded number at a time.
func (l *lingerListener) refuse(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close() // a flood: no answer rather than unbounded goroutines
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		secs := max(int((l.retryAfter+time.Second-1)/time.Second), 1)
		msg := "Service Unavailable: too many connections; retry shortly\n"
		_ = c.SetWriteDeadline(time.Now().Add(l.opts.maxTime))
		_, _ = fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", secs, len(msg), msg)
		lc := &lingerConn{Conn: c, opts: l.opts}
		lc.lingerOnClose()
		_ = lc.Close()
	}()
}

// lingerer is a connection that can be told to close gracefully.
type lingerer interface{ lingerOnClose() }

// lingerConn closes gracefully once told to: it half-closes (the client
// reads our answer and then EOF), then reads and discards what the client
// is still sending, bounded in bytes and time, and only then closes. A
// plain close with unread data would send a reset that can destroy the
// answer in the client's receive buffer before it is read.
type lingerConn struct {
	net.Conn
	opts   *lingerOptions
	linger atomic.Bool
	open   *atomic.Int64 // the listener's count, decremented once on Close
	closed atomic.Bool
}

func (c *lingerConn) lingerOnClose() { c.linger.Store(true) }

// Close drains first when lingering was asked for.
func (c *lingerConn) Close() error {
	if c.linger.CompareAndSwap(true, false) {
		c.drain()
	}
	if c.open != nil && c.closed.CompareAndSwap(false, true) {
		c.open.Add(-1)
	}
	return c.Conn.Close()
}

func (c *lingerConn) drain() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.Conn.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.opts.maxTime))
	_, _ = io.CopyN(io.Discard, c.Conn, c.opts.maxBytes)
}

// NetConn returns the connection lingerConn wraps (for callers that need
// the socket itself, like a test backend resetting it).
func (c *lingerConn) NetConn() net.Conn { return c.Conn }

// netConn returns the transport connection under TLS, if any.
func (c *lingerConn) netConn() net.Conn {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c.Conn
}

// lingerTLSConn is a lingerConn over TLS; fasthttp recognises TLS by these
// two methods.
type lingerTLSConn struct {
	*lingerConn
	tc *tls.Conn
}

// Handshake runs the TLS handshake.
func (c *lingerTLSConn) Handshake() error { return c.tc.Handshake() }

// ConnectionState reports the TLS state.
func (c *lingerTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
