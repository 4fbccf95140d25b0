package proxy

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// TestCallerGoneCancelsUpstream: a client that disconnects while a unary
// request waits for the model gets its upstream request cancelled (the
// backend sees its request context end), instead of the model generating
// to the end for nobody.
func TestCallerGoneCancelsUpstream(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			h := newHarness(t, nil)
			h.be.mode = "slow"
			conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			body := chatBody(stream)
			fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			waitFor(t, "the request to reach the backend", func() bool { return h.be.calls.Load() == 1 })
			conn.Close()
			waitFor(t, "the backend to see the request cancelled", func() bool { return h.be.cancelled.Load() == 1 })
		})
	}
}

// waitFor polls cond; the bound only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestForgedAnswersAreRefused: answers a relay can make without the key
// (only plain fields, or the request's own envelopes sent back) are not
// passed on as the model's.
func TestForgedAnswersAreRefused(t *testing.T) {
	for mode, want := range map[string]string{
		"plain-only-200": "carried no encrypted field",
		"reflect":        "failed decryption",
	} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.be.mode = mode
			status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(false), nil)
			wantOpenAIError(t, status, body, 502, errUpstream, want)
			if strings.Contains(body, canary) {
				t.Fatalf("the reflected prompt reached the client as an answer: %s", body)
			}
		})
	}
}

// TestDoneWithoutFinishIsAnError: a relay that drops the final chunk but
// keeps [DONE] must not make the stream look complete: [DONE] is not
// relayed and the stream ends with the error event.
func TestDoneWithoutFinishIsAnError(t *testing.T) {
	h := newHarness(t, nil)
	h.be.mode = "done-no-finish"
	status, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(true), nil)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	if strings.Contains(body, "[DONE]") {
		t.Fatalf("[DONE] relayed without a finish reason:\n%s", body)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, `data: {"error":`) || !strings.Contains(last, "ended before it was complete") {
		t.Fatalf("no error event at the end:\n%s", body)
	}
}

// trustingSecrets is fakeSecrets that can say which secret is trusted.
type trustingSecrets struct {
	*fakeSecrets
	distrust atomic.Bool
}

func (t *trustingSecrets) Trusted(id string) bool {
	cur, err := t.Current()
	return err == nil && cur.ID == id && !t.distrust.Load()
}

// TestStreamStopsWhenItsSecretIsDistrusted: a stream checks its own
// secret, not just that some secret exists.
func TestStreamStopsWhenItsSecretIsDistrusted(t *testing.T) {
	var ts *trustingSecrets
	h := newHarness(t, func(o *Options) {
		ts = &trustingSecrets{fakeSecrets: o.Secrets.(*fakeSecrets)}
		o.Secrets = ts
	})
	h.be.mode = "pause"
	done := make(chan string, 1)
	go func() {
		_, _, body := h.do(t, "POST", "/v1/chat/completions", chatBody(true), nil)
		done <- body
	}()
	waitFor(t, "the stream to start", func() bool { return h.be.calls.Load() == 1 })
	ts.distrust.Store(true) // e.g. re-attestation failed and a new secret came from elsewhere
	close(h.be.pause)
	body := <-done
	if !strings.Contains(body, "no longer trusted") || strings.Contains(body, "[DONE]") {
		t.Fatalf("the stream went on under a distrusted secret:\n%s", body)
	}
}

// TestClientCacheSaltSendsNoShardKey: in per-request mode a client's own
// cache_salt must not produce a content-derived shard key on the wire.
func TestClientCacheSaltSendsNoShardKey(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"model":"m","cache_salt":"` + strings.Repeat("s", 40) + `","messages":[{"role":"user","content":"hi"}]}`
	if status, _, b := h.do(t, "POST", "/v1/chat/completions", body, nil); status != 200 {
		t.Fatalf("status %d %s", status, b)
	}
	if k := h.be.headers[0].Get("Privatemode-Shard-Key"); k != "" {
		t.Fatalf("shard key %q sent in per-request mode", k)
	}
	hs := newHarness(t, func(o *Options) { o.CacheSaltMode, o.SharedSalt = CacheSaltShared, strings.Repeat("x", 32) })
	if status, _, b := hs.do(t, "POST", "/v1/chat/completions", chatBody(false), nil); status != 200 {
		t.Fatalf("shared mode: status %d %s", status, b)
	}
	if hs.be.headers[0].Get("Privatemode-Shard-Key") == "" {
		t.Fatal("no shard key in shared-cache mode")
	}
}

// TestMultipartPlainFieldAbuse: a file under a plain-listed name would go
// upstream unencrypted; a duplicated model would name one model in the
// header and send another in the body.
func TestMultipartPlainFieldAbuse(t *testing.T) {
	h := newHarness(t, nil)
	for name, build := range map[string]func(*multipart.Writer){
		"file named stream": func(w *multipart.Writer) {
			_ = w.WriteField("model", "m")
			fw, _ := w.CreateFormFile("stream", "a.wav")
			_, _ = fw.Write([]byte(canary))
		},
		"model twice": func(w *multipart.Writer) {
			_ = w.WriteField("model", canary)
			_ = w.WriteField("model", "m")
		},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			w := multipart.NewWriter(&buf)
			build(w)
			_ = w.Close()
			req, _ := http.NewRequest("POST", h.url+"/v1/audio/transcriptions", &buf)
			req.Header.Set("Content-Type", w.FormDataContentType())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantOpenAIError(t, resp.StatusCode, string(b), 400, errInvalidRequest, "form field")
			if h.be.calls.Load() != 0 {
				t.Fatal("the request was sent upstream")
			}
		})
	}
}

// TestStreamEndRules covers what a stream must carry before its end is
// believed, for both framings.
func TestStreamEndRules(t *testing.T) {
	type ev struct {
		name, data string
		encrypted  bool
	}
	for _, tc := range []struct {
		name      string
		anthropic bool
		events    []ev
		complete  bool
	}{
		{"openai finish then done", false, []ev{{"", `{"choices":[{"finish_reason":"stop"}]}`, true}, {"", "", false}}, true},
		{"openai forged plain finish", false, []ev{{"", `{"id":"\"finish_reason\":\"stop\""}`, false}, {"", "", false}}, false},
		{"anthropic forged message_stop", true, []ev{{"message_stop", `{"type":"message_stop"}`, false}}, false},
		{"anthropic stop reason in plain field", true, []ev{{"message_delta", `{"type":"message_delta","id":"\"stop_reason\":\"end_turn\""}`, false}, {"message_stop", `{"type":"message_stop"}`, false}}, false},
		{"anthropic encrypted stop reason", true, []ev{{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"}}`, true}, {"message_stop", `{"type":"message_stop"}`, false}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &streamEnd{anthropic: tc.anthropic}
			for _, x := range tc.events {
				if !tc.anthropic && x.data == "" {
					e.done = true
					continue
				}
				e.sawEvent(x.name, []byte(x.data), x.encrypted)
			}
			if e.complete() != tc.complete {
				t.Fatalf("complete %v, want %v", e.complete(), tc.complete)
			}
		})
	}
}

// TestReadyzNamesWhatIsMissingOnly: the unauthenticated probe says what is
// missing, not the upstream's answer or a secret ID behind it.
func TestReadyzNamesWhatIsMissingOnly(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Ready = func() (bool, string) {
			return false, `inference secret not ready: secret exchange failed: HTTP 500: {"error":"no secret for ID \"c2VjcmV0LWlk\""}`
		}
	})
	status, _, body := h.do(t, "GET", "/readyz", "", nil)
	if status != 503 || !strings.Contains(body, "secret exchange failed") {
		t.Fatalf("%d %s", status, body)
	}
	if strings.Contains(body, "c2VjcmV0LWlk") || strings.Contains(body, "HTTP 500") {
		t.Fatalf("/readyz carries upstream details: %s", body)
	}
}

// TestJSONShapeLimits: bodies whose structure, not size, is the cost are
// refused before any parser, in OpenAI's shape; an empty key is refused
// (the real Privatemode server answers 500 to it).
func TestJSONShapeLimits(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxRequestBody = 64 << 20 })
	var many strings.Builder
	many.WriteString(`{"model":"m","messages":[]`)
	for i := range 300_000 {
		fmt.Fprintf(&many, `,"k%d":0`, i)
	}
	many.WriteString("}")
	deep := `{"model":"m","messages":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "}"
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"many members", many.String(), 413, "object members"},
		{"deep nesting", deep, 400, "nesting depth"},
		{"empty key", `{"model":"m","":1,"messages":[]}`, 400, "empty key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := h.do(t, "POST", "/v1/chat/completions", tc.body, nil)
			wantOpenAIError(t, status, body, tc.status, errInvalidRequest, tc.msg)
		})
	}
	if h.be.calls.Load() != 0 {
		t.Fatal("a refused body was sent upstream")
	}
}

// anthropicStream answers /v1/messages with an Anthropic event stream;
// mode "forged-stop" leaves out the encrypted message_delta carrying the
// stop reason and sends only the plain message_stop a relay can forge.
func (f *fakeBackend) anthropicStream(w http.ResponseWriter, ss *envelope.ServerSession, mode string) {
	w.Header().Set("Content-Type", "text/event-stream")
	events := []struct{ name, data string }{
		{"message_start", `{"type":"message_start","message":{"id":"m1","role":"assistant","content":[]}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`},
		{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}`},
		{"message_stop", `{"type":"message_stop"}`},
	}
	for _, ev := range events {
		if mode == "forged-stop" && ev.name == "message_delta" {
			continue
		}
		enc, err := ss.EncryptJSON([]byte(ev.data), envelope.MessagesResponsePlain)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, enc)
	}
}

// TestAnthropicForgedStop: message_stop has only plain fields, so a relay
// can forge it; the stream is complete only after an encrypted
// message_delta with a stop reason.
func TestAnthropicForgedStop(t *testing.T) {
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"` + canary + `"}]}`
	for mode, wantErr := range map[string]bool{"": false, "forged-stop": true} {
		t.Run("mode="+mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.be.mode = mode
			status, _, out := h.do(t, "POST", "/v1/messages", body, nil)
			if status != 200 {
				t.Fatalf("status %d: %s", status, out)
			}
			gotErr := strings.Contains(out, "event: error")
			if gotErr != wantErr || wantErr && !strings.Contains(out, "without a stop reason") {
				t.Fatalf("error event %v, want %v:\n%s", gotErr, wantErr, out)
			}
			if wantErr && strings.Contains(out, "event: message_stop") {
				t.Fatalf("the forged message_stop was relayed:\n%s", out)
			}
		})
	}
}
