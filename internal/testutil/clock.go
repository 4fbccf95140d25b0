package testutil

import (
	"sync"
	"testing"
	"time"
)

// Clock is a settable clock for code that takes its time source as an
// option (Now, After): tests move it explicitly, so no assertion depends on
// the wall clock. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	waits   chan time.Duration // every After call, in order, for NextWait
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock that reads start until it is moved.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, waits: make(chan time.Duration, 1024)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t (forwards or backwards) and fires due waiters.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.fire()
}

// Advance moves the clock forward by d and fires due waiters.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

// After is time.After on this clock: the channel receives once the clock
// has been moved at least d past now. Each call is recorded for NextWait.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	select {
	case c.waits <- d:
	default: // nobody reads the record; the wait itself still works
	}
	return ch
}

// NextWait blocks until the code under test calls After and returns the
// duration it asked for; it fails the test after a generous safety limit
// (a guard against hangs, not a timing assertion).
func (c *Clock) NextWait(t testing.TB) time.Duration {
	t.Helper()
	select {
	case d := <-c.waits:
		return d
	case <-time.After(20 * time.Second):
		t.Fatal("the code under test never scheduled a wait")
		return 0
	}
}

// fire sends to every waiter that is due; c.mu is held.
func (c *Clock) fire() {
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}
