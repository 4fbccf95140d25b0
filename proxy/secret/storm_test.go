package secret

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestInvalidateStormIsSpaced: a relay that answers "no secret for ID" to
// every request must not get one exchange per request: re-exchanges in a
// row are spaced by the jittered backoff and callers in between get a
// retry-after error without an exchange.
func TestInvalidateStormIsSpaced(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	base := h.api.exchanges.Load()
	cur := h.mustCurrent(t)
	for range 50 {
		s, err := h.m.Invalidate(ctx, cur.ID)
		var be *ExchangeBackoffError
		switch {
		case err == nil:
			cur = s
		case errors.As(err, &be):
			if be.RetryAfter() <= 0 {
				t.Fatalf("backoff error without a wait: %v", err)
			}
		default:
			t.Fatal(err)
		}
	}
	if n := h.api.exchanges.Load() - base; n != 1 {
		t.Fatalf("%d exchanges for 50 invalidations without time passing, want 1", n)
	}
	h.clock.Advance(8 * time.Second) // Backoff.Max
	if _, err := h.m.Invalidate(ctx, cur.ID); err != nil {
		t.Fatalf("after the backoff: %v", err)
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
