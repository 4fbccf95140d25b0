package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// recordingSink keeps every record; Admit fails while refuse is set.
type recordingSink struct {
	mu     sync.Mutex
	recs   []RequestRecord
	refuse error
	got    chan struct{}
}

func newRecordingSink() *recordingSink { return &recordingSink{got: make(chan struct{}, 100)} }

func (s *recordingSink) Admit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refuse
}

func (s *recordingSink) Receipt(r RequestRecord) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
	s.got <- struct{}{}
}

// wait returns the records once n have arrived (streams record after the
// handler returned).
func (s *recordingSink) wait(t *testing.T, n int) []RequestRecord {
	t.Helper()
	for range n {
		select {
		case <-s.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("fewer than %d receipts", n)
		}
	}
	select {
	case <-s.got:
		t.Fatal("more receipts than requests")
	case <-time.After(50 * time.Millisecond):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequestRecord(nil), s.recs...)
}

func TestReceiptPerRequestAndStreamOutcome(t *testing.T) {
	sink := newRecordingSink()
	h := newHarness(t, func(o *Options) { o.Receipts = sink })
	meta := map[string]string{receipts.HeaderFeature: "duo_chat", receipts.HeaderUser: "user-123",
		receipts.HeaderInstance: "inst", receipts.HeaderWorkflow: "wf"}
	if s, _, b := h.do(t, "POST", "/v1/chat/completions", chatBody(false), meta); s != 200 {
		t.Fatalf("unary: %d %s", s, b)
	}
	if s, _, b := h.do(t, "POST", "/v1/chat/completions", chatBody(true), meta); s != 200 || !strings.Contains(b, "[DONE]") {
		t.Fatalf("stream: %d %s", s, b)
	}
	h.be.mode = "truncate"
	// Free text in the internal headers is dropped, not recorded.
	if s, _, b := h.do(t, "POST", "/v1/chat/completions", chatBody(true), map[string]string{receipts.HeaderFeature: "please summarise " + canary}); s != 200 || !strings.Contains(b, "ended before it was complete") {
		t.Fatalf("cut stream: %d %s", s, b)
	}
	recs := sink.wait(t, 3)
	h.be.mu.Lock()
	raw, hdrs := h.be.raw, h.be.headers
	h.be.mu.Unlock()
	for i, r := range recs {
		if r.Route != "chat" || r.Model != "m" || r.Status != 200 || r.Sent.IsZero() || !r.Received ||
			r.SecretID != secretN(1).ID || r.RequestSHA256 != sha256.Sum256(raw[i]) {
			t.Errorf("receipt %d: %+v", i, r)
		}
		// The internal headers were read, never forwarded.
		for k := range meta {
			if hdrs[i].Get(k) != "" {
				t.Errorf("request %d: %s went upstream", i, k)
			}
		}
	}
	// Token counts come from the answers' plain usage members.
	if recs[0].InTokens != 2 || recs[0].OutTokens != 1 || recs[1].InTokens != 2 || recs[1].OutTokens != 5 {
		t.Errorf("token counts: unary %d/%d, stream %d/%d", recs[0].InTokens, recs[0].OutTokens, recs[1].InTokens, recs[1].OutTokens)
	}
	if recs[0].Stream || recs[0].Outcome != "" || recs[0].Feature != "duo_chat" || recs[0].User != "user-123" || recs[0].Instance != "inst" || recs[0].Workflow != "wf" {
		t.Errorf("unary receipt: %+v", recs[0])
	}
	if !recs[1].Stream || recs[1].Outcome != receipts.OutcomeComplete {
		t.Errorf("complete stream: %+v", recs[1])
	}
	if !recs[2].Stream || recs[2].Outcome != receipts.OutcomeCut || recs[2].Feature != "" {
		t.Errorf("cut stream: %+v", recs[2])
	}
}

// TestStreamReceiptOutcome checks the outcome mapping at a stream's end:
// the relay's own error event means cut, the protocol's end complete, and
// anything else (the relay stopped because a write to the client failed)
// client gone.
func TestStreamReceiptOutcome(t *testing.T) {
	for _, c := range []struct {
		cut, complete bool
		want          string
	}{
		{false, true, receipts.OutcomeComplete},
		{true, false, receipts.OutcomeCut},
		{true, true, receipts.OutcomeCut},
		{false, false, receipts.OutcomeClientGone},
	} {
		sink := newRecordingSink()
		s := &Server{o: Options{Receipts: sink}}
		tm := &timing{start: time.Now(), streamed: true}
		tm.rec.active, tm.rec.cut = true, c.cut
		s.streamReceipt(tm, 200, c.complete)
		if got := sink.wait(t, 1)[0].Outcome; got != c.want {
			t.Errorf("cut %v complete %v: %q, want %q", c.cut, c.complete, got, c.want)
		}
	}
}

func TestReceiptsRefuseSendsNothing(t *testing.T) {
	sink := newRecordingSink()
	sink.refuse = receipts.ErrUnavailable
	h := newHarness(t, func(o *Options) { o.Receipts = sink })
	s, _, b := h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil)
	wantOpenAIError(t, s, b, http.StatusServiceUnavailable, "service_unavailable", "receipts.on_failure: refuse")
	if n := h.be.calls.Load(); n != 0 {
		t.Fatalf("%d requests reached the backend", n)
	}
	if len(sink.recs) != 0 {
		t.Fatal("a refused request left a receipt")
	}
	if !errors.Is(sink.refuse, receipts.ErrUnavailable) || bytes.Contains([]byte(b), []byte(canary)) {
		t.Fatal("unexpected")
	}
}

// TestReceiptUsage reads token counts from plain usage objects, in
// OpenAI's and Anthropic's names; counts only grow, and anything but a
// non-negative integer is ignored.
func TestReceiptUsage(t *testing.T) {
	for _, c := range []struct {
		usages  []string
		in, out int
	}{
		{[]string{`{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":5}}`}, 12, 34},
		{[]string{`{"input_tokens":7}`, `{"output_tokens":9}`, `{"input_tokens":7,"output_tokens":15}`, `{"output_tokens":3}`}, 7, 15},
		{[]string{`null`, `{"prompt_tokens":3,"completion_tokens":1}`, `{}`}, 3, 1},
		{[]string{`{"prompt_tokens":"12","completion_tokens":1.5,"input_tokens":-3,"output_tokens":null}`}, 0, 0},
		{[]string{`{"prompt_tokens":2`, `"usage"`, `[]`}, 0, 0},
	} {
		rs := receiptState{active: true}
		for _, u := range c.usages {
			rs.usage([]byte(u))
		}
		if rs.rec.InTokens != c.in || rs.rec.OutTokens != c.out {
			t.Errorf("%v: in %d out %d, want %d %d", c.usages, rs.rec.InTokens, rs.rec.OutTokens, c.in, c.out)
		}
	}
}
