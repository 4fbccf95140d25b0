package appliance_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relay is an erratic TCP relay between the appliance and the sandbox: it
// forwards bytes faithfully until told to misbehave. It can drip the
// backend's answers (a slow upstream), close or reset every connection
// (the backend going away mid-stream) and stop listening (the backend
// down), then come back on the same address.
type relay struct {
	t      *testing.T
	addr   string // where the appliance connects
	target string // the sandbox

	drip atomic.Pointer[dripMode]

	mu    sync.Mutex
	ln    net.Listener // nil while stopped
	conns map[*relayConn]struct{}
	wg    sync.WaitGroup
}

// dripMode slows the backend-to-appliance direction: on each connection,
// the first After bytes since the mode was set pass at full speed (the
// response head and the first events), then Chunk bytes every Every.
type dripMode struct {
	After int
	Chunk int
	Every time.Duration
}

// relayConn is one relayed connection pair.
type relayConn struct {
	down, up net.Conn      // appliance side, sandbox side
	done     chan struct{} // closed when the pair is torn down
	once     sync.Once
}

// startRelay listens on addr and relays each connection to target until
// the test ends.
func startRelay(t *testing.T, addr, target string) *relay {
	t.Helper()
	r := &relay{t: t, addr: addr, target: target, conns: map[*relayConn]struct{}{}}
	r.start()
	t.Cleanup(func() {
		r.stop()
		r.wg.Wait()
	})
	return r
}

// start (re)opens the listener on the relay's address.
func (r *relay) start() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("relay: listen on %s: %v", r.addr, err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go r.accept(ln)
}

func (r *relay) accept(ln net.Listener) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		rc := &relayConn{down: c, up: up, done: make(chan struct{})}
		r.mu.Lock()
		if r.ln != ln { // stopped meanwhile
			r.mu.Unlock()
			rc.close(false)
			continue
		}
		r.conns[rc] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			_, _ = io.Copy(up, c)
			rc.close(false)
		}()
		go func() {
			defer r.wg.Done()
			r.pipeDown(rc)
			rc.close(false)
			r.mu.Lock()
			delete(r.conns, rc)
			r.mu.Unlock()
		}()
	}
}

// pipeDown copies the sandbox's bytes to the appliance, dripping them while
// a drip mode is set.
func (r *relay) pipeDown(rc *relayConn) {
	buf := make([]byte, 32<<10)
	var cur *dripMode
	passed := 0
	for {
		n, err := rc.up.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			m := r.drip.Load()
			if m != cur {
				cur, passed = m, 0
			}
			k := len(data)
			switch {
			case m == nil:
			case passed < m.After:
				k = min(k, m.After-passed)
			default:
				k = min(k, m.Chunk)
				t := time.NewTimer(m.Every)
				select {
				case <-rc.done:
					t.Stop()
					return
				case <-t.C:
				}
			}
			if _, werr := rc.down.Write(data[:k]); werr != nil {
				return
			}
			passed += k
			data = data[k:]
		}
		if err != nil {
			return
		}
	}
}

// close tears the pair down; with reset, the appliance's side gets a TCP
// RST instead of a FIN.
func (rc *relayConn) close(reset bool) {
	rc.once.Do(func() {
		if tc, ok := rc.down.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		close(rc.done)
		_ = rc.down.Close()
		_ = rc.up.Close()
	})
}

// setDrip sets (or with nil clears) the drip mode.
func (r *relay) setDrip(m *dripMode) { r.drip.Store(m) }

// cut closes (reset: resets) every open connection; it returns how many
// there were.
func (r *relay) cut(reset bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.conns)
	for rc := range r.conns {
		rc.close(reset)
		delete(r.conns, rc)
	}
	return n
}

// open is the number of connections being relayed.
func (r *relay) open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// stop closes the listener and every connection: the backend is down, and
// new connections are refused until start.
func (r *relay) stop() {
	r.mu.Lock()
	ln := r.ln
	r.ln = nil
	r.mu.Unlock()
	if ln != nil {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			r.t.Errorf("relay: close listener: %v", err)
		}
	}
	r.cut(false)
}
