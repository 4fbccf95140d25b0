package agentplatform

import (
	"context"
	"runtime"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
)

// BenchmarkActionRoundTrip is the engine's per-action overhead on
// loopback: the flow sends a runHTTPRequest and waits, the client answers
// at once. One op = one action round trip (send, match by request id,
// deliver). Baseline: BenchmarkUnaryRoundTrip, a bare unary call on the
// same connection.
func BenchmarkActionRoundTrip(b *testing.B) {
	n := b.N
	h := newHarness(b, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(func(ctx context.Context, s flow.Session) (flow.Outcome, error) {
		for range n {
			if _, err := s.Do(ctx, &contract.Action{Action: &contract.Action_RunHTTPRequest{RunHTTPRequest: &contract.RunHTTPRequest{Method: "GET", Path: "/api/v4/user"}}}); err != nil {
				return "", err
			}
		}
		return flow.Finished, nil
	})}})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(start("chat")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		a, err := st.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Send(answer(a, `{"id":1}`)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_, _ = st.Recv()
}

// BenchmarkUnaryRoundTrip is the floor: one authenticated unary call
// (ListTools with an empty catalogue) — note it includes JWT validation,
// which an action round trip does not.
func BenchmarkUnaryRoundTrip(b *testing.B) {
	h := newHarness(b, harnessOptions{flows: map[string]flow.Flow{}})
	ctx := h.ctx(h.railsMD("duo_chat"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.client.ListTools(ctx, &contract.ListToolsRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleSessions opens 1,000 sessions that each wait for an action
// answer and reports the heap and stack growth per session (client and
// server share the process, so this is an upper bound for the server).
func BenchmarkIdleSessions(b *testing.B) {
	const sessions = 1000
	for b.Loop() {
		h := newHarness(b, harnessOptions{flows: map[string]flow.Flow{"chat": waitingFlow()}, maxSessions: sessions})
		md := h.railsMD("duo_chat")
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		streams := make([]contract.DuoWorkflow_ExecuteWorkflowClient, 0, sessions)
		for range sessions {
			st, err := h.client.ExecuteWorkflow(h.ctx(md))
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Send(start("chat")); err != nil {
				b.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				b.Fatal(err)
			}
			streams = append(streams, st)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		per := float64((after.HeapInuse+after.StackInuse)-(before.HeapInuse+before.StackInuse)) / sessions
		b.ReportMetric(per, "B/session")
		b.ReportMetric(float64(h.svc.ActiveSessions()), "sessions")
		for _, st := range streams {
			_ = st.CloseSend()
		}
	}
}
