package proxy

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recMetrics records observations for assertions.
type recMetrics struct {
	mu      sync.Mutex
	reqs    []string
	streams map[string]int
	bad     []string
}

func (r *recMetrics) ObserveRequest(route string, status int, total, overhead time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, fmt.Sprintf("%s %d", route, status))
	if overhead < 0 || overhead > total {
		r.bad = append(r.bad, fmt.Sprintf("%s: overhead %s of %s", route, overhead, total))
	}
}

func (r *recMetrics) StreamStarted(route string) { r.add(route, 1) }
func (r *recMetrics) StreamEnded(route string)   { r.add(route, -1) }

func (r *recMetrics) add(route string, d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streams == nil {
		r.streams = map[string]int{}
	}
	r.streams[route] += d
}

func (r *recMetrics) snapshot() ([]string, map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs), r.streams, slices.Clone(r.bad)
}

func TestMetricsObservations(t *testing.T) {
	m := &recMetrics{}
	h := newHarness(t, func(o *Options) { o.Metrics = m })
	h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil)
	h.do(t, "POST", "/v1/chat/completions", chatBody(true), nil)
	h.do(t, "GET", "/v1/models", "", nil)
	h.do(t, "GET", "/v1/models/some-model", "", nil)
	h.do(t, "GET", "/v1/nowhere/"+canary, "", nil)
	h.do(t, "GET", "/healthz", "", nil)
	want := []string{"/healthz 200", "/v1/chat/completions 200", "/v1/chat/completions 200", "/v1/models 200", "/v1/models/{id} 400", "other 404"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		reqs, streams, bad := m.snapshot()
		slices.Sort(reqs)
		if slices.Equal(reqs, want) {
			if streams["/v1/chat/completions"] != 0 {
				t.Errorf("streams in flight after the stream ended: %v", streams)
			}
			if len(bad) > 0 {
				t.Errorf("impossible overheads: %v", bad)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observations %v, want %v", reqs, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range want {
		route := r[:len(r)-4]
		if !slices.Contains(RouteLabels(), route) {
			t.Errorf("label %q is not in RouteLabels", route)
		}
	}
}
