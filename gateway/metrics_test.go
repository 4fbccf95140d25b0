package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type recMetrics struct {
	mu      sync.Mutex
	reqs    []string
	streams int
}

func (r *recMetrics) ObserveRequest(route, prompt string, status int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, fmt.Sprintf("%s/%s %d", route, prompt, status))
}
func (r *recMetrics) StreamStarted(string) { r.mu.Lock(); r.streams++; r.mu.Unlock() }
func (r *recMetrics) StreamEnded(string)   { r.mu.Lock(); r.streams--; r.mu.Unlock() }

func TestMetricsLabelsAreBounded(t *testing.T) {
	m := &recMetrics{}
	h := newHarness(t, harnessOptions{options: func(o *Options) { o.Metrics = m }})
	h.do(http.MethodGet, "/monitoring/healthz", "", http.Header{})
	h.post("/v2/code/completions", `{"current_file":{"file_name":"a.go","content_above_cursor":"func "}}`)
	h.post("/v1/prompts/model_configuration%2Fcheck", `{"inputs":{}}`)
	h.post("/v1/prompts/no_such_prompt_"+strings.Repeat("x", 40), `{"inputs":{}}`)
	h.post("/v2/chat/agent", `{"messages":[{"role":"user","content":"hi"}]}`)
	h.do(http.MethodGet, "/random/path", "", http.Header{})
	want := []string{"chat_agent/ 200", "code_completions/ 200", "healthz/ 200", "prompts/model_configuration/check 200", "prompts/unknown 404", "unknown/ 401"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		got, streams := slices.Clone(m.reqs), m.streams
		m.mu.Unlock()
		slices.Sort(got)
		if slices.Equal(got, want) && streams == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("observations %v (streams %d), want %v", got, streams, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTestConnection(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	id, _, err := h.s.TestConnection(context.Background())
	if err != nil || id != "chat-model" {
		t.Fatalf("TestConnection = %q, %v", id, err)
	}
	if got := h.model.lastChat(t); got.MaxTokens > 16 || got.Model != "chat-model" {
		t.Errorf("check request %+v", got)
	}
	h.model.Reply = func(any) (string, error) { return "", errors.New("backend down") }
	if _, _, err := h.s.TestConnection(context.Background()); err == nil || !strings.Contains(err.Error(), "backend down") {
		t.Errorf("failing model: %v", err)
	}
}
