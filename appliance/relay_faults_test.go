package appliance_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startRelayEnv starts a sandbox and an appliance whose every connection
// to the sandbox (attestation, exchange, inference) runs through an
// erratic relay, and waits until the appliance is ready.
func startRelayEnv(t *testing.T, o envOptions) (*env, *relay) {
	t.Helper()
	o.DeferSandbox = true
	e := startEnv(t, o)
	// The appliance dials e.sbAddr: the relay takes that address and the
	// sandbox serves on another one behind it.
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.serveSandbox(sln)
	r := startRelay(t, e.sbAddr, sln.Addr().String())
	e.app.Reattest() // skip the backoff after the failed first attempt
	e.waitReady()
	return e, r
}

// openStream starts a streamed chat request and returns the response once
// its first event has arrived; the rest is in the returned reader.
func (e *env) openStream(t *testing.T, content string, maxTokens int) (*http.Response, *bufio.Reader, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/v1/chat/completions", strings.NewReader(chatBody(content, true, maxTokens)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: HTTP %d: %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	var first []byte
	for {
		line, err := br.ReadBytes('\n')
		first = append(first, line...)
		if err != nil {
			t.Fatalf("stream: no first event (%v): %s", err, first)
		}
		if bytes.Equal(bytes.TrimSpace(line), nil) && bytes.Contains(first, []byte("data:")) {
			return resp, br, first
		}
	}
}

// rest reads the remainder of a stream opened by openStream and returns
// all its events.
func rest(t *testing.T, br *bufio.Reader, first []byte) []sseEvent {
	t.Helper()
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v (a stream must end with an error event, not a broken connection)", err)
	}
	return parseSSE(t, append(first, b...))
}

// TestRelayFaults puts an erratic TCP relay between the appliance and its
// backend and checks, for each misbehaviour, what the client sees and
// that the appliance recovers without a restart.
func TestRelayFaults(t *testing.T) {
	t.Parallel()
	const chat = "/v1/chat/completions"

	t.Run("backend down mid-stream", func(t *testing.T) {
		t.Parallel()
		e, r := startRelayEnv(t, envOptions{TokensPerSecond: 20})
		_, br, first := e.openStream(t, "down mid-stream", 40)
		r.stop()
		evs := rest(t, br, first)
		msg, ok := streamError(evs)
		if !ok || hasDone(evs) || !strings.Contains(msg, "confidential backend") {
			t.Errorf("stream cut by the backend going down: error event %v %q, [DONE] %v", ok, msg, hasDone(evs))
		}
		// Still attested, but nothing answers: a clear 502, no hang.
		e.post(chat, chatBody("while down", false, 4)).wantError(t, http.StatusBadGateway, "could not be reached")
		// The next attestation notices: not ready, with a reason, and
		// requests are refused before anything is sent.
		e.app.Reattest()
		e.waitFor("the appliance to notice the backend is down", func() bool { ok, _ := e.app.Ready(); return !ok })
		if _, reason := e.app.Ready(); reason == "" {
			t.Error("not ready without a reason")
		}
		e.post(chat, chatBody("while down", false, 4)).wantError(t, http.StatusServiceUnavailable, "not available")
		e.post(chat, chatBody("while down", true, 4)).wantError(t, http.StatusServiceUnavailable, "not available")

		r.start()
		e.app.Reattest()
		e.waitReady()
		e.chatOK(t, "the backend came back")
	})

	t.Run("1 byte per second upstream", func(t *testing.T) {
		t.Parallel()
		// The idle timeout counts whole events: a backend that sends one
		// byte a second never completes one in time.
		e, r := startRelayEnv(t, envOptions{StreamIdleTimeout: 300 * time.Millisecond, UpstreamTimeout: 5 * time.Second})
		_, br, first := e.openStream(t, "warm the connection", 2)
		_ = rest(t, br, first)
		// Let the response head and the first event through, then drip.
		r.setDrip(&dripMode{After: 2 << 10, Chunk: 1, Every: time.Second})
		resp := e.post(chat, chatBody("one byte a second", true, 30))
		evs := parseSSE(t, resp.body)
		msg, ok := streamError(evs)
		if resp.status != http.StatusOK || !ok || !strings.Contains(msg, "stopped sending") || hasDone(evs) {
			t.Errorf("dripped stream: HTTP %d, error event %v %q, [DONE] %v:\n%s", resp.status, ok, msg, hasDone(evs), resp.body)
		}
		r.setDrip(nil)
		e.chatOK(t, "a 1 byte/s upstream")
	})

	t.Run("slow but progressing upstream is not cut", func(t *testing.T) {
		t.Parallel()
		// The backend produces 20 events a second; the relay passes 128
		// bytes every 5ms, so each event reaches the proxy in pieces,
		// the last piece ending with the event's chunk.
		e, r := startRelayEnv(t, envOptions{StreamIdleTimeout: 3 * time.Second, TokensPerSecond: 20})
		r.setDrip(&dripMode{After: 0, Chunk: 128, Every: 5 * time.Millisecond})
		resp := e.post(chat, chatBody("slow but steady", true, 20))
		evs := parseSSE(t, resp.body)
		if msg, ok := streamError(evs); resp.status != http.StatusOK || ok || !hasDone(evs) {
			t.Errorf("slow stream: HTTP %d, error event %v %q, [DONE] %v", resp.status, ok, msg, hasDone(evs))
		}
		if n := len(evs); n < 20 {
			t.Errorf("slow stream: %d events, want at least 20", n)
		}
		r.setDrip(nil)
		e.chatOK(t, "a slow upstream")
	})

	t.Run("connection reset mid-stream", func(t *testing.T) {
		t.Parallel()
		e, r := startRelayEnv(t, envOptions{TokensPerSecond: 20})
		_, br, first := e.openStream(t, "reset mid-stream", 40)
		if n := r.cut(true); n == 0 {
			t.Fatal("no connection to reset")
		}
		evs := rest(t, br, first)
		msg, ok := streamError(evs)
		if !ok || hasDone(evs) || !strings.Contains(msg, "broke off") {
			t.Errorf("reset stream: error event %v %q, [DONE] %v", ok, msg, hasDone(evs))
		}
		if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "reset by peer") {
			t.Errorf("the error event leaks internal details: %q", msg)
		}
		if ok, reason := e.app.Ready(); !ok {
			t.Errorf("a reset connection made the appliance unready: %s", reason)
		}
		e.chatOK(t, "a reset connection")
	})

	t.Run("idle pooled connections reset", func(t *testing.T) {
		t.Parallel()
		e, r := startRelayEnv(t, envOptions{})
		for round := range 3 {
			e.chatOK(t, "pooling connections")
			if r.open() == 0 {
				t.Fatal("no pooled connection to reset")
			}
			// A middlebox drops every idle connection: the next requests
			// must get through on fresh ones.
			r.cut(true)
			before := e.lastSeq()
			e.chatOK(t, "the pooled connections were reset")
			if n := len(e.inferenceRequests(chat, before)); n < 2 {
				t.Errorf("round %d: the sandbox saw %d requests after the reset, want 2", round, n)
			}
		}
	})
}
