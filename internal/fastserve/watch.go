package fastserve

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrClientGone is the cause of a context cancelled because the client
// closed its connection.
var ErrClientGone = errors.New("the client closed its connection")

// WatchClient returns a context, derived from parent, that is cancelled
// with cause ErrClientGone when the client of ctx closes or resets its
// connection while the request is being served. fasthttp has no
// per-request context and reads nothing from a connection while its
// handler runs, so without this a model call runs to its end for a caller
// that left long ago.
//
// The returned stop must be called once the request's answer is complete:
// before the handler returns, or at the end of a stream writer (fasthttp
// reads the connection again only after that). stop cancels the context;
// it is safe to call more than once and from any goroutine.
// Where the connection cannot be watched (not a socket, not Linux) the
// context is only cancelled by parent or stop.
func WatchClient(ctx *fasthttp.RequestCtx, parent context.Context) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(parent)
	raw := rawConn(ctx.Conn())
	if raw == nil {
		return wctx, func() { cancel(context.Canceled) }
	}
	w := &watcher{conn: raw, done: make(chan struct{}), exited: make(chan struct{})}
	go w.run(func() { cancel(ErrClientGone) })
	var once sync.Once
	return wctx, func() {
		once.Do(func() {
			w.stop()
			cancel(context.Canceled)
		})
	}
}

// rawConn returns the TCP (or Unix) socket under c, or nil.
func rawConn(c net.Conn) net.Conn {
	if lc, ok := c.(*lingerTLSConn); ok {
		c = lc.lingerConn
	}
	if lc, ok := c.(*lingerConn); ok {
		c = lc.netConn()
	}
	if _, ok := c.(syscall.Conn); !ok {
		return nil
	}
	return c
}

// watcher waits, without reading, until the client's side of conn closes.
type watcher struct {
	conn   net.Conn
	done   chan struct{} // closed by stop
	exited chan struct{} // closed when run returns
}

// stop ends the watch and waits for it: the poll is woken by a read
// deadline in the past, which is cleared again before the connection goes
// back to fasthttp (it sets its own deadline before its next read).
func (w *watcher) stop() {
	close(w.done)
	_ = w.conn.SetReadDeadline(time.Unix(1, 0))
	<-w.exited
	_ = w.conn.SetReadDeadline(time.Time{})
}

func (w *watcher) run(gone func()) {
	defer close(w.exited)
	if peerClosed(w.conn, w.done) {
		gone()
	}
}
