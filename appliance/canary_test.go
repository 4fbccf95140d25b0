package appliance_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// TestPlaintextCanary puts a unique marker into every prompt-bearing field
// of every route (and into client headers) and checks that no byte the
// sandbox received, no appliance log line at debug level and no readiness
// or status answer contains it, while the marker does come back to the
// client wherever the sandbox echoes it.
func TestPlaintextCanary(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	marker := "CANARY" + hex.EncodeToString(rnd[:])
	// Client headers that must never be forwarded.
	hdr := []string{"X-Canary", marker, "Cookie", "session=" + marker, "User-Agent", "agent-" + marker,
		"X-Forwarded-For", "10.0.0.1", "OpenAI-Organization", marker}
	echoed := 0
	wantEcho := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", what, r.status, r.body)
		}
		if !bytes.Contains(r.body, []byte(marker)) && !strings.Contains(streamedText(t, r), marker) {
			t.Errorf("%s: the marker did not round-trip to the client: %s", what, r.body)
		}
		echoed++
	}
	wantOK := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", what, r.status, r.body)
		}
	}
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tools := []any{map[string]any{"type": "function", "function": map[string]any{
		"name":        "lookup",
		"description": "tool description " + marker,
		"parameters": map[string]any{"type": "object", "properties": map[string]any{
			"query": map[string]any{"type": "string", "description": "parameter " + marker, "enum": []string{marker}},
		}},
	}}}
	messages := []any{
		map[string]any{"role": "system", "content": "system " + marker},
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "part " + marker}}},
		map[string]any{"role": "assistant", "content": "assistant " + marker},
		map[string]any{"role": "user", "content": marker + " is the last user message"},
	}

	// Chat, unary and streamed, with tools present but not called.
	for _, stream := range []bool{false, true} {
		wantEcho("chat", e.post("/v1/chat/completions", js(map[string]any{
			"model": sandbox.ModelChat, "messages": messages, "tools": tools, "stream": stream, "max_tokens": 12,
			"temperature": 0.2, "user": marker, "metadata": map[string]string{"note": marker},
			"response_format": map[string]any{"type": "text"}, "stop": []string{marker + "stop"},
		}), hdr...))
	}
	// Chat with a forced tool call: the arguments echo the message.
	for _, stream := range []bool{false, true} {
		wantEcho("tool call", e.post("/v1/chat/completions", js(map[string]any{
			"model": sandbox.ModelChat, "messages": messages, "tools": tools, "stream": stream,
			"tool_choice": map[string]any{"type": "function", "function": map[string]string{"name": "lookup"}},
		}), hdr...))
	}
	// Legacy completions: continuation (echoes) and fill-in-the-middle.
	for _, stream := range []bool{false, true} {
		wantEcho("completion", e.post("/v1/completions", js(map[string]any{
			"model": sandbox.ModelCode, "prompt": "// " + marker, "stream": stream, "max_tokens": 8,
		}), hdr...))
		wantOK("fill-in-the-middle", e.post("/v1/completions", js(map[string]any{
			"model": sandbox.ModelCode, "prompt": "func " + marker + "() {", "suffix": "} // " + marker, "stream": stream,
		}), hdr...))
	}
	wantOK("completion with a prompt list", e.post("/v1/completions", js(map[string]any{
		"model": sandbox.ModelCode, "prompt": []string{marker + " one", marker + " two"}, "max_tokens": 4,
	}), hdr...))
	// Embeddings: a string and a list.
	wantOK("embedding", e.post("/v1/embeddings", js(map[string]any{"model": sandbox.ModelEmbed, "input": marker}), hdr...))
	wantOK("embeddings", e.post("/v1/embeddings", js(map[string]any{
		"model": sandbox.ModelEmbed, "input": []string{marker, "x " + marker}, "dimensions": 8, "user": marker,
	}), hdr...))
	// Anthropic messages, unary and streamed, with system and tools.
	for _, stream := range []bool{false, true} {
		wantEcho("anthropic", e.post("/v1/messages", js(map[string]any{
			"model": sandbox.ModelChat, "max_tokens": 10, "stream": stream,
			"system": []any{map[string]string{"type": "text", "text": "system " + marker}},
			"messages": []any{
				map[string]any{"role": "user", "content": marker + " anthropic question"},
			},
			"tools": []any{map[string]any{"name": "lookup", "description": "d " + marker,
				"input_schema": map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string", "description": marker}}}}},
			"metadata": map[string]string{"user_id": marker},
		}), hdr...))
	}
	// Multipart transcription: file bytes and form fields. verbose_json
	// echoes the language field.
	for _, stream := range []bool{false, true} {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fields := [][2]string{{"model", sandbox.ModelWhisper}, {"language", marker}, {"prompt", "prompt " + marker},
			{"temperature", "0"}, {"response_format", "verbose_json"}}
		if stream {
			fields = append(fields, [2]string{"stream", "true"})
		}
		for _, f := range fields {
			if err := mw.WriteField(f[0], f[1]); err != nil {
				t.Fatal(err)
			}
		}
		fw, err := mw.CreateFormFile("file", marker+".wav")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(append(wavFile(800), []byte("audio bytes "+marker)...))
		_ = mw.Close()
		req, err := http.NewRequest(http.MethodPost, e.base+"/v1/audio/transcriptions", &body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if r := e.do(req); stream {
			wantOK("transcription stream", r)
		} else {
			wantEcho("transcription", r)
		}
	}

	// Faults whose error paths handle the (encrypted) answer: the marker
	// must not leak into the client's error or the logs either.
	for _, f := range []sandbox.Fault{sandbox.FaultPlaintextFlag, sandbox.FaultTruncate, sandbox.Fault500} {
		for _, stream := range []bool{false, true} {
			e.sb.SetFault(f, 1)
			r := e.post("/v1/chat/completions", chatBody(marker+" under fault", stream, 6), hdr...)
			e.sb.SetFault(sandbox.FaultNone, 0)
			if f == sandbox.FaultPlaintextFlag && bytes.Contains(r.body, []byte(marker)) {
				t.Errorf("fault %s (stream %v): an unencrypted answer reached the client: %s", f, stream, r.body)
			}
			if r.status == http.StatusOK && f != sandbox.FaultTruncate {
				t.Errorf("fault %s (stream %v): HTTP 200: %s", f, stream, r.body)
			}
		}
	}

	if echoed < 9 {
		t.Fatalf("only %d answers echoed the marker", echoed)
	}

	// Nothing the sandbox received before decryption carries the marker.
	reqs := e.sb.Requests()
	inference := 0
	for _, rr := range reqs {
		if rr.Truncated {
			t.Errorf("request %d to %s was too large to check completely", rr.Seq, rr.Path)
		}
		if strings.HasPrefix(rr.Path, "/v1/") {
			inference++
		}
		if containsFold(rr.Body, marker) || strings.Contains(strings.ToLower(rr.Path), strings.ToLower(marker)) {
			t.Errorf("request %d to %s carries the marker in plaintext:\n%s", rr.Seq, rr.Path, rr.Body)
		}
		for k, vs := range rr.Header {
			if containsFold([]byte(k), marker) {
				t.Errorf("request %d to %s: header name %q carries the marker", rr.Seq, rr.Path, k)
			}
			for _, v := range vs {
				if containsFold([]byte(v), marker) {
					t.Errorf("request %d to %s: header %s: %q carries the marker", rr.Seq, rr.Path, k, v)
				}
			}
		}
		for _, h := range []string{"Cookie", "X-Canary", "X-Forwarded-For", "Openai-Organization", "Anthropic-Version"} {
			if v := rr.Header.Get(h); v != "" {
				t.Errorf("request %d to %s: client header %s was forwarded: %q", rr.Seq, rr.Path, h, v)
			}
		}
	}
	if inference < 20 || len(reqs) >= sandbox.DefaultRecordSize {
		t.Fatalf("the sandbox recorded %d inference requests of %d (ring %d): not all were checked", inference, len(reqs), sandbox.DefaultRecordSize)
	}

	// Nor did the appliance log it, at debug level.
	logs := e.logs.String()
	if !strings.Contains(logs, "level=DEBUG") && !strings.Contains(logs, "level=WARN") {
		t.Fatalf("no log output captured: %q", logs)
	}
	if containsFold([]byte(logs), marker) {
		t.Errorf("the appliance logged the marker:\n%s", logs)
	}
	// Nor do readiness and status show it.
	if r := e.get("/readyz"); containsFold(r.body, marker) {
		t.Errorf("/readyz carries the marker: %s", r.body)
	}
	if st, err := json.Marshal(e.app.Status()); err != nil || containsFold(st, marker) {
		t.Errorf("status carries the marker (%v): %s", err, st)
	}
}

// streamedText reassembles the generated text of an event stream: the
// content, text, tool-call argument and partial_json deltas, in order.
func streamedText(t *testing.T, r response) string {
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		return ""
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range []string{"content", "text", "arguments", "partial_json"} {
				if s, ok := v[k].(string); ok {
					b.WriteString(s)
				}
			}
			for _, k := range []string{"choices", "delta", "tool_calls", "function"} {
				if sub, ok := v[k]; ok {
					walk(sub)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, ev := range parseSSE(t, r.body) {
		var v any
		if json.Unmarshal([]byte(ev.data), &v) == nil {
			walk(v)
		}
	}
	return b.String()
}

func containsFold(b []byte, s string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s)))
}
