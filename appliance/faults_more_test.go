package appliance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// outcome is one request of a burst, as the client saw it.
type outcome struct {
	stream bool
	status int
	ctype  string
	body   []byte
	err    error // transport error: the request hung or broke
}

// burst sends the bodies concurrently to the proxy's chat route and
// returns what each got. Every request is bounded by waitLimit: a request
// that hangs shows as an error, not as a stuck test.
func (e *env) burst(bodies []string) []outcome {
	out := make([]outcome, len(bodies))
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Go(func() {
			o := &out[i]
			o.stream = strings.Contains(b, `"stream":true`)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/v1/chat/completions", strings.NewReader(b))
			if err != nil {
				o.err = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.http.Do(req)
			if err != nil {
				o.err = err
				return
			}
			defer resp.Body.Close()
			o.status, o.ctype = resp.StatusCode, resp.Header.Get("Content-Type")
			o.body, o.err = io.ReadAll(resp.Body)
		})
	}
	wg.Wait()
	return out
}

// verdict classifies an outcome: "ok" (a complete answer), "clean" (an
// OpenAI-shaped error: a JSON error body or a stream's error event), or a
// description of what was wrong with it.
func verdict(t *testing.T, o outcome) string {
	t.Helper()
	switch {
	case o.err != nil:
		return "transport error: " + o.err.Error()
	case o.status == http.StatusOK && o.stream:
		evs := parseSSE(t, o.body)
		_, failed := streamError(evs)
		switch {
		case failed && !hasDone(evs):
			return "clean"
		case !failed && hasDone(evs):
			return "ok"
		}
		return fmt.Sprintf("stream neither complete nor ended by an error event:\n%s", o.body)
	case o.status == http.StatusOK:
		var c struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if json.Unmarshal(o.body, &c) == nil && len(c.Choices) == 1 && strings.HasPrefix(c.Choices[0].Message.Content, "Sandbox reply to:") {
			return "ok"
		}
		return fmt.Sprintf("HTTP 200 with an unexpected body: %s", o.body)
	default:
		var v struct {
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if strings.HasPrefix(o.ctype, "application/json") && json.Unmarshal(o.body, &v) == nil && v.Error != nil && v.Error.Message != "" {
			return "clean"
		}
		return fmt.Sprintf("HTTP %d without an OpenAI error: %s", o.status, o.body)
	}
}

// TestSecretExpiryUnderLoad makes the backend forget the inference secret
// while a burst of unary and streamed requests runs. With one forgotten
// secret, every request succeeds: those refused re-exchange (once, shared)
// and retry. With the backend forgetting repeatedly, each request still
// either succeeds or fails with a clear error; none hangs.
func TestSecretExpiryUnderLoad(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{TokensPerSecond: 200})
	const n = 12
	bodies := func(round int) []string {
		b := make([]string, n)
		for i := range b {
			b[i] = chatBody(fmt.Sprintf("round %d request %d", round, i), i%2 == 0, 8)
		}
		return b
	}
	for round := range 3 {
		rotations := e.app.Status().Rotations
		before := e.lastSeq()
		e.sb.SetFault(sandbox.FaultExpiredSecret, 1)
		for i, o := range e.burst(bodies(round)) {
			if v := verdict(t, o); v != "ok" {
				t.Errorf("round %d, request %d (stream %v): %s", round, i, o.stream, v)
			}
		}
		if got := e.app.Status().Rotations; got != rotations+1 {
			t.Errorf("round %d: %d new secrets for one forgotten secret, want 1 (shared re-exchange)", round, got-rotations)
		}
		exchanges := 0
		for _, r := range e.sb.Requests() {
			if r.Seq > before && r.Path == "/privatemode/v1/secret" {
				exchanges++
			}
		}
		if exchanges != 1 {
			t.Errorf("round %d: the sandbox saw %d secret exchanges, want 1", round, exchanges)
		}
	}

	e.sb.SetFault(sandbox.FaultExpiredSecret, 5)
	counts := map[string]int{}
	for i, o := range e.burst(bodies(9)) {
		v := verdict(t, o)
		if v != "ok" && v != "clean" {
			t.Errorf("repeated forgetting, request %d (stream %v): %s", i, o.stream, v)
		}
		counts[v]++
	}
	t.Logf("with the backend forgetting 5 times: %v", counts)
	e.sb.SetFault(sandbox.FaultNone, 0)
	e.chatOK(t, "the backend forgot secrets under load")
}

// TestAttestationFailsMidStream switches the backend's evidence to a bad
// measurement while a stream runs: the stream ends with an error event
// (the appliance no longer trusts the backend it is reading from), new
// requests are refused with a clear 503, and service resumes once the
// evidence is good again.
func TestAttestationFailsMidStream(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{TokensPerSecond: 10})
	_, br, first := e.openStream(t, "in flight while attestation fails", 60)
	e.sb.SetFault(sandbox.FaultBadMeasurement, -1)
	e.app.Reattest()
	e.waitFor("the appliance to refuse the changed measurement", func() bool { ok, _ := e.app.Ready(); return !ok })
	if _, reason := e.app.Ready(); !strings.Contains(reason, "attestation") {
		t.Errorf("readiness reason %q does not name the attestation", reason)
	}
	before := e.lastSeq()
	e.post("/v1/chat/completions", chatBody("must not be sent", true, 4)).
		wantError(t, http.StatusServiceUnavailable, "not available")
	if n := len(e.inferenceRequests("/v1/chat/completions", before)); n != 0 {
		t.Errorf("%d requests reached the backend that failed attestation", n)
	}

	evs := rest(t, br, first)
	msg, ok := streamError(evs)
	if !ok || hasDone(evs) {
		t.Errorf("the in-flight stream ran on after attestation failed: error event %v %q, [DONE] %v, %d events",
			ok, msg, hasDone(evs), len(evs))
	}

	e.sb.SetFault(sandbox.FaultNone, 0)
	e.app.Reattest()
	e.waitReady()
	e.chatOK(t, "the evidence is good again")
}
