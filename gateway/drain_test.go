package gateway

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// heldModel streams one delta, then waits for release (or the call's
// context) before the rest: a chat stream in flight.
type heldModel struct {
	*fakeModel
	entered chan struct{}
	release chan struct{}
}

func (m *heldModel) ChatStream(ctx context.Context, _ model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	if err := onDelta("first "); err != nil {
		return model.Result{}, err
	}
	close(m.entered)
	select {
	case <-m.release:
	case <-ctx.Done():
		return model.Result{}, context.Cause(ctx)
	}
	if err := onDelta("second"); err != nil {
		return model.Result{}, err
	}
	return model.Result{Model: "fake", Text: "first second", FinishReason: "stop"}, nil
}

// drainHarness is a harness whose chat model holds each stream.
func drainHarness(t *testing.T) (*harness, *heldModel) {
	hm := &heldModel{fakeModel: &fakeModel{}, entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, harnessOptions{options: func(o *Options) { o.Model = hm }})
	return h, hm
}

// shutdownStarted waits until the listener refuses connections: Shutdown
// has begun.
func shutdownStarted(t *testing.T, h *harness) {
	t.Helper()
	addr := strings.TrimPrefix(h.url, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts after Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownLetsStreamsFinish: a chat stream in flight when Shutdown
// starts is not cut; it ends normally, and Shutdown returns once it has.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	h, hm := drainHarness(t)
	got := make(chan response, 1)
	go func() { got <- h.post("/v2/chat/agent", `{"messages":[{"role":"user","content":"hi"}]}`) }()
	<-hm.entered
	shut := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { shut <- h.s.Shutdown(ctx) }()
	shutdownStarted(t, h)
	close(hm.release)
	r := <-got
	if r.status != 200 || !strings.Contains(string(r.body), "second") || strings.Contains(string(r.body), `"type":"error"`) {
		t.Errorf("stream during the drain: %d %s", r.status, r.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestShutdownCutsStreamsAtDrainEnd: a stream still running when the
// drain time is up is cancelled, with an error event. (Shutdown itself may
// return nil: the cut stream can close its connection before fasthttp
// looks at the deadline.)
func TestShutdownCutsStreamsAtDrainEnd(t *testing.T) {
	h, hm := drainHarness(t)
	got := make(chan response, 1)
	go func() { got <- h.post("/v2/chat/agent", `{"messages":[{"role":"user","content":"hi"}]}`) }()
	<-hm.entered
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := h.s.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v", err)
	}
	r := <-got
	if strings.Contains(string(r.body), "second") || !strings.Contains(string(r.body), `"type":"error"`) {
		t.Errorf("stream past the drain: %d %s", r.status, r.body)
	}
}
