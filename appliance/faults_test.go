package appliance_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// TestFaults injects each of the sandbox's inference fault modes into one
// request and checks that the client gets a clear, correctly coded error
// in OpenAI's shape (or an error event in the stream), or a transparent
// success where the protocol allows a retry, and that the next requests
// succeed.
func TestFaults(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{FaultDelay: 50 * time.Millisecond})
	const chat = "/v1/chat/completions"

	t.Run("delay", func(t *testing.T) {
		e.sb.SetFault(sandbox.FaultDelay, 2)
		c := e.client()
		got, err := c.Chat.Completions.New(e.ctx(), openai.ChatCompletionNewParams{
			Model:    sandbox.ModelChat,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("slow backend")},
		})
		if err != nil {
			t.Fatalf("a delayed answer failed: %v", err)
		}
		if !strings.HasPrefix(got.Choices[0].Message.Content, "Sandbox reply to: slow backend") {
			t.Errorf("content %q", got.Choices[0].Message.Content)
		}
		r := e.post(chat, chatBody("slow stream", true, 4))
		if evs := parseSSE(t, r.body); r.status != http.StatusOK || !hasDone(evs) {
			t.Errorf("delayed stream: HTTP %d: %s", r.status, r.body)
		}
		e.chatOK(t, "delay")
	})

	t.Run("reset-midstream", func(t *testing.T) {
		e.sb.SetFault(sandbox.FaultResetMidstream, 1)
		r := e.post(chat, chatBody("reset me", true, 10))
		if r.status != http.StatusOK {
			t.Fatalf("HTTP %d: %s", r.status, r.body)
		}
		evs := parseSSE(t, r.body)
		msg, ok := streamError(evs)
		if !ok || !strings.Contains(msg, "broke off") || hasDone(evs) {
			t.Errorf("reset stream: error event %v %q, [DONE] %v:\n%s", ok, msg, hasDone(evs), r.body)
		}
		if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "reset by peer") {
			t.Errorf("the error event leaks internal details: %q", msg)
		}
		// The SDK reports the error event as the stream's error.
		e.sb.SetFault(sandbox.FaultResetMidstream, 1)
		c := e.client()
		stream := c.Chat.Completions.NewStreaming(e.ctx(), openai.ChatCompletionNewParams{
			Model:    sandbox.ModelChat,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("reset the SDK")},
		})
		n := 0
		for stream.Next() {
			n++
		}
		if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "broke off") {
			t.Errorf("SDK stream error after %d chunks: %v", n, err)
		}
		// A unary request reset before any answer is retried once with a
		// fresh nonce: the client sees success.
		e.sb.SetFault(sandbox.FaultResetMidstream, 1)
		before := e.lastSeq()
		r = e.post(chat, chatBody("reset unary", false, 4))
		if r.status != http.StatusOK {
			t.Errorf("unary request reset once: HTTP %d: %s", r.status, r.body)
		}
		if n := len(e.inferenceRequests(chat, before)); n != 2 {
			t.Errorf("the sandbox saw %d attempts, want 2", n)
		}
		e.chatOK(t, "reset-midstream")
	})

	t.Run("truncate", func(t *testing.T) {
		e.sb.SetFault(sandbox.FaultTruncate, 1)
		r := e.post(chat, chatBody("truncate me", true, 10))
		evs := parseSSE(t, r.body)
		msg, ok := streamError(evs)
		if r.status != http.StatusOK || !ok || !strings.Contains(msg, "ended before it was complete") || hasDone(evs) {
			t.Errorf("truncated stream: HTTP %d, error event %v %q, [DONE] %v:\n%s", r.status, ok, msg, hasDone(evs), r.body)
		}
		if len(evs) < 2 {
			t.Errorf("the chunks before the truncation were not relayed: %s", r.body)
		}
		// Anthropic: no message_stop, an error event.
		e.sb.SetFault(sandbox.FaultTruncate, 1)
		b, _ := json.Marshal(map[string]any{"model": sandbox.ModelChat, "max_tokens": 10, "stream": true,
			"messages": []map[string]string{{"role": "user", "content": "truncate anthropic"}}})
		r = e.post("/v1/messages", string(b))
		evs = parseSSE(t, r.body)
		last := evs[len(evs)-1]
		if last.event != "error" || !strings.Contains(last.data, "ended before it was complete") {
			t.Errorf("truncated Anthropic stream ends with %q %s", last.event, last.data)
		}
		// Unary: the body is cut in half and cannot be decrypted.
		e.sb.SetFault(sandbox.FaultTruncate, 1)
		e.post(chat, chatBody("truncate unary", false, 10)).wantError(t, http.StatusBadGateway, "failed decryption")
		e.chatOK(t, "truncate")
	})

	t.Run("no-secret", func(t *testing.T) {
		rotations := e.app.Status().Rotations
		e.sb.SetFault(sandbox.FaultNoSecret, 1)
		before := e.lastSeq()
		c := e.client()
		got, err := c.Chat.Completions.New(e.ctx(), openai.ChatCompletionNewParams{
			Model:    sandbox.ModelChat,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("forgotten secret")},
		})
		if err != nil {
			t.Fatalf("the retry with a new secret failed: %v", err)
		}
		if !strings.HasPrefix(got.Choices[0].Message.Content, "Sandbox reply to: forgotten secret") {
			t.Errorf("content %q", got.Choices[0].Message.Content)
		}
		wantTwoSecrets(t, e, before)
		if st := e.app.Status(); st.Rotations != rotations+1 {
			t.Errorf("rotations %d, want %d", st.Rotations, rotations+1)
		}
		e.chatOK(t, "no-secret")
	})

	t.Run("expired-secret", func(t *testing.T) {
		e.sb.SetFault(sandbox.FaultExpiredSecret, 1)
		before := e.lastSeq()
		r := e.post(chat, chatBody("expired secret", true, 4))
		if evs := parseSSE(t, r.body); r.status != http.StatusOK || !hasDone(evs) {
			t.Fatalf("stream after the backend dropped the secret: HTTP %d: %s", r.status, r.body)
		}
		wantTwoSecrets(t, e, before)
		e.chatOK(t, "expired-secret")
	})

	t.Run("plaintext-flag", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			e.sb.SetFault(sandbox.FaultPlaintextFlag, 1)
			r := e.post(chat, chatBody("injected plaintext", stream, 4))
			r.wantError(t, http.StatusBadGateway, "without encryption")
			if strings.Contains(string(r.body), "Sandbox reply") || strings.Contains(string(r.body), "injected plaintext") {
				t.Errorf("the unencrypted answer reached the client: %s", r.body)
			}
		}
		e.chatOK(t, "plaintext-flag")
	})

	t.Run("429", func(t *testing.T) {
		e.sb.SetFault(sandbox.Fault429, 1)
		c := e.client()
		_, err := c.Chat.Completions.New(e.ctx(), openai.ChatCompletionNewParams{
			Model:    sandbox.ModelChat,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("too many")},
		})
		apiErr := asAPIError(t, err)
		if apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Type != "rate_limit_error" || !strings.Contains(apiErr.Message, "rate limit") {
			t.Errorf("rate limit: HTTP %d %s %q", apiErr.StatusCode, apiErr.Type, apiErr.Message)
		}
		if ra := apiErr.Response.Header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After %q, want 1", ra)
		}
		e.chatOK(t, "429")
	})

	t.Run("500", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			e.sb.SetFault(sandbox.Fault500, 1)
			r := e.post(chat, chatBody("model error", stream, 4))
			msg, typ := r.apiError(t)
			if r.status != http.StatusInternalServerError || msg != "sandbox: injected model error (500)" || typ != "InternalServerError" {
				t.Errorf("model error (stream %v): HTTP %d %s %q", stream, r.status, typ, msg)
			}
		}
		e.sb.SetFault(sandbox.Fault500, 1)
		c := e.client()
		_, err := c.Embeddings.New(e.ctx(), openai.EmbeddingNewParams{
			Model: sandbox.ModelEmbed,
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")},
		})
		if apiErr := asAPIError(t, err); apiErr.StatusCode != http.StatusInternalServerError || !strings.Contains(apiErr.Message, "injected model error") {
			t.Errorf("SDK model error: HTTP %d %q", apiErr.StatusCode, apiErr.Message)
		}
		e.chatOK(t, "500")
	})
}

// wantTwoSecrets checks that the sandbox saw two attempts of the last
// request, under different secret IDs, with an exchange between them.
func wantTwoSecrets(t *testing.T, e *env, before uint64) {
	t.Helper()
	var ids []string
	exchanged := false
	for _, r := range e.sb.Requests() {
		switch {
		case r.Seq <= before:
		case r.Path == "/privatemode/v1/secret":
			exchanged = len(ids) == 1
		case strings.HasPrefix(r.Path, "/v1/"):
			ids = append(ids, r.Header.Get("Privatemode-Secret-Id"))
		}
	}
	if len(ids) != 2 || ids[0] == "" || ids[1] == "" || ids[0] == ids[1] || !exchanged {
		t.Errorf("attempts under secret IDs %q (exchange between: %v), want two different ones", ids, exchanged)
	}
}

// TestFaultBadMeasurement makes the backend's evidence change measurement
// and re-attests: requests are refused until the evidence is good again.
func TestFaultBadMeasurement(t *testing.T) {
	t.Parallel()
	for _, platform := range []string{sandbox.PlatformTDX, sandbox.PlatformSNP} {
		t.Run(platform, func(t *testing.T) {
			e := startEnv(t, envOptions{Platform: platform})
			e.chatOK(t, "start")
			e.sb.SetFault(sandbox.FaultBadMeasurement, -1)
			e.app.Reattest()
			e.waitFor("the appliance to refuse the changed measurement", func() bool { ok, _ := e.app.Ready(); return !ok })
			st := e.app.Status()
			if st.AttestationFailures == 0 || !strings.Contains(st.LastError, "attestation") {
				t.Errorf("status after the bad measurement: %+v", st)
			}
			e.post("/v1/chat/completions", chatBody("must not be sent", false, 4)).
				wantError(t, http.StatusServiceUnavailable, "not available")
			before := e.lastSeq()
			e.post("/v1/chat/completions", chatBody("must not be sent", true, 4)).
				wantError(t, http.StatusServiceUnavailable, "not available")
			if n := len(e.inferenceRequests("/v1/chat/completions", before)); n != 0 {
				t.Errorf("%d requests reached the backend that failed attestation", n)
			}
			r := e.get("/readyz")
			var rz struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal(r.body, &rz); err != nil || r.status != http.StatusServiceUnavailable || rz.Ready || !strings.Contains(rz.Reason, "attestation") {
				t.Errorf("/readyz: HTTP %d %s", r.status, r.body)
			}

			e.sb.SetFault(sandbox.FaultNone, 0)
			e.app.Reattest()
			e.waitReady()
			e.chatOK(t, "bad-measurement")
			if r := e.get("/readyz"); r.status != http.StatusOK {
				t.Errorf("/readyz after recovery: HTTP %d %s", r.status, r.body)
			}
		})
	}
}

// TestBackendDownAtStart starts the appliance before its backend: it is not
// ready and refuses requests with a clear 503 until the backend comes up on
// its address, then serves without a restart.
func TestBackendDownAtStart(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{DeferSandbox: true})
	e.waitFor("a failed attestation", func() bool { return e.app.Status().AttestationFailures > 0 })
	if ok, reason := e.app.Ready(); ok || reason == "" {
		t.Fatalf("ready %v (%q) with the backend down", ok, reason)
	}
	msg := e.post("/v1/chat/completions", chatBody("nobody home", false, 4)).
		wantError(t, http.StatusServiceUnavailable, "confidential backend is not available")
	if strings.Contains(msg, e.sbAddr) {
		t.Errorf("the client error leaks the backend address: %q", msg)
	}
	r := e.get("/readyz")
	var rz struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(r.body, &rz); err != nil || r.status != http.StatusServiceUnavailable || rz.Ready || rz.Reason == "" {
		t.Errorf("/readyz with the backend down: HTTP %d %s", r.status, r.body)
	}
	// Models need no attestation, but the backend is down: a clear 502.
	e.get("/v1/models").wantError(t, http.StatusBadGateway, "could not be reached")

	e.startSandbox()
	e.waitReady()
	e.chatOK(t, "the backend came up")
	if r := e.get("/readyz"); r.status != http.StatusOK {
		t.Errorf("/readyz: HTTP %d %s", r.status, r.body)
	}
}

// TestStreamStall checks that a stream whose backend stops sending ends
// with an error event after the idle timeout, and that a backend that does
// not answer a stream at all gets the client a 502.
func TestStreamStall(t *testing.T) {
	t.Parallel()
	t.Run("mid-stream", func(t *testing.T) {
		t.Parallel()
		// One token, then the next only after a second: a stall for an
		// idle timeout of 200ms.
		e := startEnv(t, envOptions{StreamIdleTimeout: 200 * time.Millisecond, TokensPerSecond: 0.5})
		r := e.post("/v1/chat/completions", chatBody("stall", true, 5))
		evs := parseSSE(t, r.body)
		msg, ok := streamError(evs)
		if r.status != http.StatusOK || !ok || !strings.Contains(msg, "stopped sending") || hasDone(evs) {
			t.Errorf("stalled stream: HTTP %d, error %v %q:\n%s", r.status, ok, msg, r.body)
		}
		if len(evs) < 2 {
			t.Errorf("the first chunk was not relayed before the stall: %s", r.body)
		}
	})
	t.Run("before-headers", func(t *testing.T) {
		t.Parallel()
		// The backend holds back its whole answer. The idle timeout covers
		// streams once their headers arrived; before that, the upstream
		// (response header) timeout bounds the wait.
		e := startEnv(t, envOptions{
			StreamIdleTimeout: 200 * time.Millisecond,
			UpstreamTimeout:   300 * time.Millisecond,
			FaultDelay:        time.Minute,
		})
		e.sb.SetFault(sandbox.FaultDelay, 1)
		e.post("/v1/chat/completions", chatBody("stall before headers", true, 5)).
			wantError(t, http.StatusBadGateway, "confidential backend")
		e.chatOK(t, "a stall")
	})
}
