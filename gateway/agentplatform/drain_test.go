package agentplatform

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestShutdownLetsSessionsFinish: a session running when the drain begins
// goes on to its end (OK, its last checkpoint delivered) and Shutdown
// waits for it; a session opened during the drain is refused with
// UNAVAILABLE (the GOAWAY: the client retries on another replica) or, when
// the server accepted its stream before the GOAWAY, served to its end too.
func TestShutdownLetsSessionsFinish(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(echoHTTP)}})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	must(t, err)
	must(t, st.Send(start("chat")))
	a, err := st.Recv()
	if err != nil || a.GetRunHTTPRequest() == nil {
		t.Fatalf("first action %v %v", a, err)
	}
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.svc.Shutdown(ctx)
		close(done)
	}()
	for !h.svc.isDraining() {
		time.Sleep(5 * time.Millisecond)
	}
	late, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	var la *contract.Action
	if err == nil {
		_ = late.Send(start("chat"))
		la, err = late.Recv()
	}
	switch {
	case err == nil && la.GetRunHTTPRequest() != nil:
		must(t, late.Send(answer(la, "late")))
		if cp, err := late.Recv(); err != nil || cp.GetNewCheckpoint().GetStatus() != "FINISHED" {
			t.Errorf("a session accepted during the drain: %v %v", cp, err)
		}
		if _, err := late.Recv(); err != io.EOF {
			t.Errorf("a session accepted during the drain ended with %v, want OK", err)
		}
	case status.Code(err) != codes.Unavailable:
		t.Errorf("a session opened during the drain: %v %v, want UNAVAILABLE or to be served", la, err)
	}
	select {
	case <-done:
		t.Fatal("Shutdown returned while a session was still running")
	default:
	}
	must(t, st.Send(answer(a, "root")))
	cp, err := st.Recv()
	if err != nil || cp.GetNewCheckpoint().GetStatus() != "FINISHED" || cp.GetNewCheckpoint().GetGoal() != "root" {
		t.Fatalf("the draining session's checkpoint: %v %v", cp, err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("the draining session ended with %v, want OK", err)
	}
	<-done
}

// TestShutdownStopsSessionsAtTheGraceLimit: a session still running when
// the drain is about to run out is stopped as on a server shutdown (a
// STOPPED checkpoint, then UNAVAILABLE so the client resumes elsewhere)
// before the drain's deadline.
func TestShutdownStopsSessionsAtTheGraceLimit(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": waitingFlow()}})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	must(t, err)
	must(t, st.Send(start("chat")))
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	// A 4 s drain: sessions may run for 2 s, the rest is for stopping them.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { h.svc.Shutdown(ctx); close(done) }()
	cp, err := st.Recv()
	if err != nil || cp.GetNewCheckpoint().GetStatus() != "STOPPED" {
		t.Fatalf("want STOPPED, got %v %v", cp, err)
	}
	if ctx.Err() != nil {
		t.Errorf("the session was stopped only when the drain had run out: %v", context.Cause(ctx))
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE so the client retries, got %v", err)
	}
	<-done
}

func TestSessionGrace(t *testing.T) {
	for _, c := range []struct{ left, want time.Duration }{
		{30 * time.Second, 27 * time.Second},
		{10 * time.Second, 7 * time.Second},
		{6 * time.Second, 3 * time.Second},
		{4 * time.Second, 2 * time.Second},
		{0, 0},
		{-time.Second, 0},
	} {
		if got := sessionGrace(c.left); got != c.want {
			t.Errorf("sessionGrace(%s) = %s, want %s", c.left, got, c.want)
		}
	}
}

// isDraining reports whether Shutdown has begun (health NOT_SERVING).
func (s *Service) isDraining() bool {
	r, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
}
