package secret

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestInvalidateStormIsSpaced: a relay that answers "no secret for ID" to
// every request must not get one exchange per request at request rate:
// re-exchanges in a row wait the growing, jittered backoff (shared by all
// callers), and a quiet spell starts the count again.
func TestInvalidateStormIsSpaced(t *testing.T) {
	h := newHarness(t, nil)
	var waits []time.Duration
	h.m.sleep = func(_ context.Context, d time.Duration) bool {
		waits = append(waits, d)
		h.clock.Advance(d)
		return true
	}
	ctx := context.Background()
	h.m.step(ctx)
	cur := h.mustCurrent(t)
	for range 8 {
		s, err := h.m.Invalidate(ctx, cur.ID)
		if err != nil {
			t.Fatal(err)
		}
		cur = s
	}
	// The first re-exchange is immediate; each later one waited at least
	// the backoff's lower bound (jitter takes off up to half).
	b := h.m.o.Backoff
	if len(waits) != 7 {
		t.Fatalf("%d waits for 8 re-exchanges in a row, want 7: %v", len(waits), waits)
	}
	for i, w := range waits {
		if lo := b.Delay(i+1, 1); w < lo {
			t.Fatalf("re-exchange %d waited %v, want at least %v (all: %v)", i+2, w, lo, waits)
		}
	}
	h.clock.Advance(2*b.Max + time.Second)
	waits = nil
	if _, err := h.m.Invalidate(ctx, cur.ID); err != nil || len(waits) != 0 {
		t.Fatalf("after a quiet spell: %v, waits %v", err, waits)
	}
}

// TestFailedInvalidateWakesTheLoop: after a re-exchange failed and the
// secret was withdrawn, the running loop is woken and retries at the
// backoff's time, not at its next scheduled tick (up to a minute later).
func TestFailedInvalidateWakesTheLoop(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	old := h.mustCurrent(t)
	select {
	case <-h.m.wake:
	default:
	}
	h.api.failSecret.Store(http.StatusInternalServerError)
	if _, err := h.m.Invalidate(ctx, old.ID); err == nil {
		t.Fatal("Invalidate succeeded against a failing exchange")
	}
	select {
	case <-h.m.wake:
	default:
		t.Fatal("the loop was not woken: it sleeps until its next tick")
	}
	// Woken, the loop waits only for the backoff, then recovers.
	if wait := h.m.step(ctx); wait <= 0 || wait > 8*time.Second {
		t.Fatalf("the loop waits %v after the failure, want the backoff", wait)
	}
	h.api.failSecret.Store(0)
	h.clock.Advance(8 * time.Second)
	h.m.step(ctx)
	if _, err := h.m.Current(); err != nil {
		t.Fatalf("not recovered: %v", err)
	}
}

// TestTrustedFollowsRotationAndRevocation: a stream may finish under the
// secret a rotation replaced, but not under any secret from before a
// failed attestation, even once a new secret is agreed.
func TestTrustedFollowsRotationAndRevocation(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	s1 := h.mustCurrent(t)
	h.clock.Advance(testLifetime - testRotate) // rotation due
	h.m.step(ctx)
	s2 := h.mustCurrent(t)
	if s2.ID == s1.ID || !h.m.Trusted(s1.ID) || !h.m.Trusted(s2.ID) {
		t.Fatalf("after a rotation: trusted(old) %v trusted(new) %v", h.m.Trusted(s1.ID), h.m.Trusted(s2.ID))
	}
	h.api.badEvidence.Store(true)
	h.m.Reattest()
	h.m.step(ctx)
	if h.m.Trusted(s2.ID) || h.m.Trusted(s1.ID) {
		t.Fatal("a secret is trusted after the attestation failed")
	}
	h.api.badEvidence.Store(false)
	h.m.Reattest()
	h.clock.Advance(time.Minute)
	h.m.step(ctx)
	s3 := h.mustCurrent(t)
	if !h.m.Trusted(s3.ID) || h.m.Trusted(s2.ID) || h.m.Trusted(s1.ID) {
		t.Fatalf("after recovery: new %v, pre-failure %v %v", h.m.Trusted(s3.ID), h.m.Trusted(s2.ID), h.m.Trusted(s1.ID))
	}
}
