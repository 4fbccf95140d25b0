package secret

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

func randFloat() float64 { return rand.Float64() }

// flight is one Invalidate exchange shared by every caller holding the same
// stale ID. Its context is cancelled when the last waiting caller gives up,
// so one impatient caller cannot fail the others.
type flight struct {
	done   chan struct{}
	cancel context.CancelFunc
	refs   int // guarded by Manager.flightsMu
	s      Secret
	err    error
}

// Invalidate replaces the secret id after the backend answered `no secret
// for ID` (HTTP 500). Concurrent callers with the same id share ONE
// exchange; a caller whose id was already replaced gets the current secret
// without any exchange. If the last exchange failed, or the backend is not
// attested, it attests first. If the replacement fails, the stale secret
// (which the backend no longer knows) is withdrawn and Current reports why.
//
// It blocks until the exchange completes or ctx is done; cancelling ctx
// abandons only this caller's wait.
func (m *Manager) Invalidate(ctx context.Context, id string) (Secret, error) {
	if cur := m.pub.Load().secret; cur != nil && cur.ID != id && m.o.Now().Before(cur.ExpiresAt) {
		return *cur, nil
	}
	m.flightsMu.Lock()
	f := m.flights[id]
	if f == nil {
		// A relay answering "no secret for ID" to everything would
		// otherwise force one exchange per request: re-exchanges are
		// spaced by the shared, jittered backoff (the flight waits its
		// turn; callers wait with it, bounded by their contexts).
		wait := m.invalidateBackoff(m.o.Now())
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		m.flights[id] = f
		go m.fly(fctx, f, id, wait)
	}
	f.refs++
	m.flightsMu.Unlock()

	select {
	case <-f.done:
		return f.s, f.err
	case <-ctx.Done():
		m.flightsMu.Lock()
		if f.refs--; f.refs == 0 {
			f.cancel()
		}
		m.flightsMu.Unlock()
		return Secret{}, ctx.Err()
	}
}

// invalidateBackoff books the next invalidation-driven exchange and
// returns how long until it may start. Called with flightsMu held. After
// the n-th re-exchange in a row the next starts Backoff.Delay(n) later; a
// quiet spell of twice Backoff.Max starts the count again.
func (m *Manager) invalidateBackoff(now time.Time) time.Duration {
	start := now
	if m.nextInvalidate.After(now) {
		start = m.nextInvalidate
	}
	if start.Sub(m.lastInvalidate) > 2*m.o.Backoff.Max {
		m.invalidations = 0
	}
	m.invalidations++
	m.lastInvalidate = start
	m.nextInvalidate = start.Add(m.o.Backoff.Delay(m.invalidations, m.rand()))
	return start.Sub(now)
}

// fly runs the shared exchange and publishes its result to the waiters.
func (m *Manager) fly(ctx context.Context, f *flight, id string, wait time.Duration) {
	if wait <= 0 || m.sleep(ctx, wait) {
		f.s, f.err = m.invalidate(ctx, id)
	} else {
		f.err = ctx.Err()
	}
	m.flightsMu.Lock()
	delete(m.flights, id)
	m.flightsMu.Unlock()
	f.cancel()
	close(f.done)
}

func (m *Manager) invalidate(ctx context.Context, id string) (Secret, error) {
	if !m.lock(ctx) {
		return Secret{}, ctx.Err()
	}
	defer m.unlock()
	// Re-check under the lock: the loop or an earlier flight may have
	// replaced the secret while we queued.
	now := m.o.Now()
	if cur := m.st.secret; cur != nil && cur.ID != id && now.Before(cur.ExpiresAt) {
		return *cur, nil
	}
	if cur := m.st.secret; cur != nil && cur.ID == id {
		m.log.Info("backend lost the inference secret; exchanging a new one", "secret", ShortID(id))
	}
	err := func() error {
		if m.st.meshCA == nil || m.st.exchangeFailed || m.forceAttest.Load() {
			if err := m.attestLocked(ctx); err != nil {
				return err
			}
		}
		return m.exchangeLocked(ctx)
	}()
	if err != nil {
		m.failedLocked(ctx, err)
		// The loop may be asleep for up to a minute; wake it so it retries
		// at the backoff's time and a recovered backend is usable again
		// in seconds without waiting for another request.
		m.wakeLoop()
		if cur := m.st.secret; cur != nil && cur.ID == id && ctx.Err() == nil {
			reason := fmt.Errorf("backend lost the inference secret and the replacement failed: %w", err)
			m.mu.Lock()
			m.st.secret, m.st.secretMeshCA = nil, nil
			m.mu.Unlock()
			m.pub.Store(&published{reason: reason})
			m.notify()
		}
		return Secret{}, err
	}
	m.succeededLocked()
	return *m.st.secret, nil
}

// wakeLoop makes Run recompute its wait now (it may be asleep on a timer
// set before a failure moved the retry time closer).
func (m *Manager) wakeLoop() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// sleepCtx waits d on a timer unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
