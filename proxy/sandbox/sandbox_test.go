package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

func chatBody(msg string, extra string) string {
	m, _ := json.Marshal(msg)
	return `{"model":"sandbox-chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":` +
		string(m) + `}],"temperature":0.2,"cache_salt":"` + salt + `"` + extra + `}`
}

func TestAttestAndExchange(t *testing.T) {
	for _, platform := range []string{PlatformTDX, PlatformSNP} {
		t.Run(platform, func(t *testing.T) {
			h := start(t, Options{Platform: platform})
			res, _, err := h.attest()
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			want := attest.PlatformTDX
			if platform == PlatformSNP {
				want = attest.PlatformSNP
			}
			if res.Verdict != attest.VerdictAccepted || res.Platform != want {
				t.Fatalf("verdict %s platform %s", res.Verdict, res.Platform)
			}
			sec := h.exchange()
			if h.s.Secrets() != 1 || len(sec.ID) != 44 {
				t.Fatalf("store has %d secrets, id %q", h.s.Secrets(), sec.ID)
			}
			if keys := h.s.APIKeys(); len(keys) != 1 || keys[0] != "test-api-key" {
				t.Errorf("API keys recorded: %v", keys)
			}
			if !strings.Contains(h.logs.String(), Banner) {
				t.Errorf("startup log lacks the banner:\n%s", h.logs.String())
			}
		})
	}
}

func TestAttestNeedsKey(t *testing.T) {
	h := start(t, Options{})
	for _, path := range []string{pathAttest, pathSecret} {
		for _, auth := range []string{"", "Bearer ", "Basic x"} {
			req, _ := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(`{"Nonce":"AAAA"}`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			r := h.send(req, nil, nil)
			if r.status != http.StatusUnauthorized || r.header.Get(headerEncrypted) != "false" {
				t.Errorf("%s with %q: %d %s", path, auth, r.status, r.raw)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodPost, h.url+pathSecret, strings.NewReader(`{"PublicKey":"AAAA"}`))
	req.Header.Set("Authorization", "Bearer k")
	if r := h.send(req, nil, nil); r.status != http.StatusBadRequest {
		t.Errorf("short public key: %d %s", r.status, r.raw)
	}
}

func TestChatUnary(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	r := h.do(pathChat, &sec, chatBody("hello sandbox, how are you today?", `,"max_tokens":12`))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	// On the wire: id and usage plain, everything else an envelope.
	wire := decode[map[string]json.RawMessage](t, r.raw)
	if !bytes.HasPrefix(wire["id"], []byte(`"chatcmpl-sandbox-`)) || !bytes.Contains(wire["usage"], []byte(`"completion_tokens":12`)) {
		t.Errorf("plain fields on the wire: id %s usage %s", wire["id"], wire["usage"])
	}
	if !bytes.HasPrefix(wire["choices"], []byte(`"`+sec.ID+":")) {
		t.Errorf("choices not an envelope: %.80s", wire["choices"])
	}
	got := decode[struct {
		Model   string `json:"model"`
		Choices []struct {
			Message      struct{ Role, Content string } `json:"message"`
			FinishReason string                         `json:"finish_reason"`
		} `json:"choices"`
	}](t, r.body)
	text := got.Choices[0].Message.Content
	if !strings.HasPrefix(text, "Sandbox reply to: hello sandbox, how are you") || len(strings.Fields(text)) != 12 {
		t.Errorf("reply %q", text)
	}
	if got.Choices[0].FinishReason != "length" || got.Model != ModelChat {
		t.Errorf("finish %q model %q", got.Choices[0].FinishReason, got.Model)
	}
	// Deterministic.
	r2 := h.do(pathChat, &sec, chatBody("hello sandbox, how are you today?", `,"max_tokens":12`))
	if !bytes.Contains(r2.body, []byte(text)) {
		t.Errorf("second reply differs: %s", r2.body)
	}
}

// streamText reassembles streamed chat content and checks the chunk
// invariants: role first, finish_reason only on the last choice chunk,
// a usage chunk with no choices, [DONE].
func streamText(t *testing.T, r *response) (string, string) {
	t.Helper()
	if r.status != http.StatusOK || r.err != nil || !r.done {
		t.Fatalf("status %d err %v done %v\n%s", r.status, r.err, r.done, r.raw)
	}
	var text strings.Builder
	finish := ""
	n := len(r.events)
	for i, ev := range r.events {
		c := decode[chatChunk](t, ev.data)
		if c.Usage == nil {
			t.Fatalf("chunk %d without (continuous) usage", i)
		}
		if i == n-1 {
			if len(c.Choices) != 0 || c.Usage.CompletionTokens != n-1 {
				t.Fatalf("last chunk is not the usage chunk: %s", ev.data)
			}
			continue
		}
		ch := c.Choices[0]
		if (i == 0) != (ch.Delta.Role == "assistant") && c.Object == "chat.completion.chunk" {
			t.Errorf("chunk %d role %q", i, ch.Delta.Role)
		}
		if (ch.FinishReason != nil) != (i == n-2) {
			t.Errorf("chunk %d finish_reason %v", i, ch.FinishReason)
		}
		if ch.FinishReason != nil {
			finish = *ch.FinishReason
		}
		text.WriteString(ch.Delta.Content + ch.Text)
	}
	return text.String(), finish
}

func TestChatStream(t *testing.T) {
	h := start(t, Options{TokensPerSecond: 10000})
	sec := h.exchange()
	msg := "tell me a story about <confidential> & \"quoted\" things\n"
	unary := h.do(pathChat, &sec, chatBody(msg, `,"max_tokens":20`))
	r := h.do(pathChat, &sec, chatBody(msg, `,"max_tokens":20,"stream":true`))
	// One session decrypted every chunk, so the counter continued.
	text, finish := streamText(t, r)
	if len(r.events) != 21 || finish != "length" {
		t.Fatalf("%d events, finish %q", len(r.events), finish)
	}
	want := decode[struct {
		Choices []struct{ Message struct{ Content string } } `json:"choices"`
	}](t, unary.body).Choices[0].Message.Content
	if text != want {
		t.Errorf("stream %q != unary %q", text, want)
	}
	if !bytes.Contains(r.raw, []byte("\n\ndata: [DONE]\n\n")) || r.header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("framing: %q", r.raw[max(0, len(r.raw)-40):])
	}
}

func TestToolCallStream(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	tools := `,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",` +
		`"properties":{"city":{"type":"string"},"days":{"type":"integer"},"metric":{"type":"boolean"}}}}},` +
		`{"type":"function","function":{"name":"search_docs","parameters":{}}}]`
	for name, extra := range map[string]string{
		"asked":  tools,
		"forced": tools + `,"tool_choice":{"type":"function","function":{"name":"search_docs"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := h.do(pathChat, &sec, chatBody("Please call get_weather for Zürich", extra+`,"stream":true`))
			if r.status != http.StatusOK || !r.done || len(r.events) < 4 {
				t.Fatalf("status %d done %v events %d", r.status, r.done, len(r.events))
			}
			var args strings.Builder
			var id, fn, finish string
			for i, ev := range r.events[:len(r.events)-1] {
				c := decode[chatChunk](t, ev.data)
				tc := c.Choices[0].Delta.ToolCalls
				if len(tc) == 0 && c.Choices[0].FinishReason != nil {
					// The closing chunk: empty delta, finish reason only.
					finish = *c.Choices[0].FinishReason
					continue
				}
				if len(tc) != 1 {
					t.Fatalf("chunk %d: %s", i, ev.data)
				}
				if i == 0 {
					id, fn = tc[0].ID, tc[0].Function.Name
					if tc[0].Type != "function" || id == "" {
						t.Errorf("first chunk: %s", ev.data)
					}
				} else if tc[0].ID != "" || tc[0].Function.Name != "" {
					t.Errorf("chunk %d repeats id/name", i)
				}
				if c.Choices[0].FinishReason != nil {
					finish = *c.Choices[0].FinishReason
				}
				args.WriteString(tc[0].Function.Arguments)
			}
			if !json.Valid([]byte(args.String())) || finish != "tool_calls" {
				t.Fatalf("arguments %q finish %q", args.String(), finish)
			}
			want := map[string]string{"asked": "get_weather", "forced": "search_docs"}[name]
			if fn != want {
				t.Errorf("called %q, want %q", fn, want)
			}
			if name == "asked" {
				a := decode[map[string]any](t, []byte(args.String()))
				if a["days"] != 42.0 || a["metric"] != true || !strings.HasPrefix(a["city"].(string), "sandbox: ") {
					t.Errorf("arguments %v", a)
				}
			}
		})
	}
}

func TestLegacyCompletionFIM(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	body := func(prompt, suffix string, stream bool) string {
		p, _ := json.Marshal(prompt)
		s, _ := json.Marshal(suffix)
		st := ""
		if stream {
			st = `,"stream":true`
		}
		return `{"model":"sandbox-code","prompt":` + string(p) + `,"suffix":` + string(s) + `,"max_tokens":64,"cache_salt":"` + salt + `"` + st + `}`
	}
	text := func(r *response) string {
		return decode[struct {
			Choices []struct{ Text string } `json:"choices"`
		}](t, r.body).Choices[0].Text
	}
	a := text(h.do(pathCompletions, &sec, body("def add(a, b):\n    ", "\n\nprint(add(1, 2))", false)))
	b := text(h.do(pathCompletions, &sec, body("def add(a, b):\n    ", "\n\nprint(add(1, 2))", false)))
	c := text(h.do(pathCompletions, &sec, body("def add(a, b):\n    ", "\n\nprint(add(3, 4))", false)))
	if a != b || a == c || !strings.Contains(a, "fill-in-the-middle") {
		t.Fatalf("middles %q %q %q", a, b, c)
	}
	s, finish := streamText(t, h.do(pathCompletions, &sec, body("def add(a, b):\n    ", "\n\nprint(add(1, 2))", true)))
	if s != a || finish != "stop" {
		t.Errorf("streamed middle %q (%s), unary %q", s, finish, a)
	}
}

func TestEmbeddings(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	type emb struct {
		Data []struct {
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage usage `json:"usage"`
	}
	r := h.do(pathEmbeddings, &sec, `{"model":"sandbox-embed","input":["alpha","beta","alpha"],"dimensions":64}`)
	got := decode[emb](t, r.body)
	if len(got.Data) != 3 || got.Usage.PromptTokens != 3 {
		t.Fatalf("%s", r.body)
	}
	vec := func(raw json.RawMessage) []float64 { return decode[[]float64](t, raw) }
	v0, v1 := vec(got.Data[0].Embedding), vec(got.Data[1].Embedding)
	var norm float64
	for _, f := range v0 {
		norm += f * f
	}
	if len(v0) != 64 || math.Abs(norm-1) > 1e-5 || !bytes.Equal(got.Data[0].Embedding, got.Data[2].Embedding) || v0[0] == v1[0] {
		t.Errorf("len %d norm %f", len(v0), norm)
	}
	if !bytes.HasPrefix(decode[map[string]json.RawMessage](t, r.raw)["data"], []byte(`"`+sec.ID)) {
		t.Errorf("data not encrypted on the wire")
	}
	r = h.do(pathEmbeddings, &sec, `{"model":"sandbox-embed","input":"alpha","encoding_format":"base64"}`)
	var b64 string
	_ = json.Unmarshal(decode[emb](t, r.body).Data[0].Embedding, &b64)
	if raw, err := base64.StdEncoding.DecodeString(b64); err != nil || len(raw) != 4*DefaultEmbeddingDims {
		t.Errorf("base64 embedding: %d bytes, %v", len(raw), err)
	}
	if r := h.do(pathEmbeddings, &sec, `{"model":"sandbox-chat","input":"x"}`); r.status != http.StatusBadRequest {
		t.Errorf("chat model embedding: %d", r.status)
	}
}

func TestMessages(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	body := `{"model":"sandbox-chat","max_tokens":8,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi there"}]}],"cache_salt":"` + salt + `"`
	r := h.do(pathMessages, &sec, body+`}`)
	msg := decode[struct {
		Type       string `json:"type"`
		StopReason string `json:"stop_reason"`
		Content    []struct{ Type, Text string }
	}](t, r.body)
	if msg.Type != "message" || msg.StopReason != "max_tokens" || !strings.HasPrefix(msg.Content[0].Text, "Sandbox reply to: hi there") {
		t.Fatalf("%s", r.body)
	}
	r = h.do(pathMessages, &sec, body+`,"stream":true}`)
	var names []string
	var text strings.Builder
	for _, ev := range r.events {
		names = append(names, ev.name)
		d := decode[struct {
			Type  string `json:"type"`
			Delta struct{ Text string }
		}](t, ev.data)
		if d.Type != ev.name {
			t.Errorf("event %q carries type %q", ev.name, d.Type)
		}
		text.WriteString(d.Delta.Text)
	}
	want := "message_start content_block_start" + strings.Repeat(" content_block_delta", 8) + " content_block_stop message_delta message_stop"
	if strings.Join(names, " ") != want || r.done {
		t.Errorf("events %v (done %v)", names, r.done)
	}
	if text.String() != msg.Content[0].Text {
		t.Errorf("streamed %q, unary %q", text.String(), msg.Content[0].Text)
	}
	if !bytes.HasPrefix(r.raw, []byte("event: message_start\ndata: {")) {
		t.Errorf("framing %.60q", r.raw)
	}
}

func transcriptionRequest(t *testing.T, h *harness, sec *envelope.Secret, audio []byte, extra map[string]string) *response {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("model", ModelWhisper)
	for k, v := range extra {
		_ = w.WriteField(k, v)
	}
	fw, _ := w.CreateFormFile("file", "audio.wav")
	_, _ = fw.Write(audio)
	_ = w.Close()
	body, ct := buf.Bytes(), w.FormDataContentType()
	var sess *envelope.Session
	if sec != nil {
		var err error
		sess, _ = envelope.NewSession(*sec)
		if body, ct, err = sess.EncryptMultipart(body, w.Boundary(), envelope.TranscriptionFormPlain); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, h.url+pathTranscriptions, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	if sec != nil {
		req.Header.Set(headerSecretID, sec.ID)
	}
	return h.send(req, sess, routes[pathTranscriptions])
}

func TestTranscription(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	audio := bytes.Repeat([]byte("RIFF-secret-audio"), 4000)
	r := transcriptionRequest(t, h, &sec, audio, map[string]string{"language": "de"})
	got := decode[struct {
		Text  string
		Usage struct{ Seconds int }
	}](t, r.body)
	if r.status != http.StatusOK || got.Text != transcript(audio) || !strings.HasPrefix(got.Text, "Sandbox transcription ") || got.Usage.Seconds != 2 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if rec := h.s.Requests(); bytes.Contains(rec[len(rec)-1].Body, []byte("secret-audio")) {
		t.Error("audio reached the sandbox in plaintext")
	}
	r = transcriptionRequest(t, h, &sec, audio, map[string]string{"stream": "true"})
	text, _ := streamText(t, r)
	if text != transcript(audio) {
		t.Errorf("streamed %q", text)
	}
	if r := transcriptionRequest(t, h, &sec, audio, map[string]string{"response_format": "srt"}); r.status != http.StatusBadRequest {
		t.Errorf("srt: %d", r.status)
	}
}

func TestModelsAndRoutes(t *testing.T) {
	h := start(t, Options{})
	get := func(path string) *response {
		req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
		return h.send(req, nil, nil)
	}
	r := get("/v1/models")
	list := decode[struct{ Data []Model }](t, r.body)
	if r.status != 200 || len(list.Data) != 4 || r.header.Get(headerEncrypted) != "false" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, m := range list.Data {
		if !strings.Contains(m.ID, "sandbox") || !strings.Contains(m.OwnedBy, "NOT CONFIDENTIAL") || len(m.Tasks) == 0 {
			t.Errorf("model %+v", m)
		}
	}
	if m := decode[Model](t, get("/v1/models/sandbox-chat").body); strings.Join(m.Tasks, ",") != "generate,tool_calling" {
		t.Errorf("sandbox-chat tasks %v", m.Tasks)
	}
	if r := get("/v1/models/gpt-4"); r.status != http.StatusNotFound {
		t.Errorf("unknown model: %d", r.status)
	}
	if r := get("/v1/responses"); r.status != http.StatusNotImplemented || r.header.Get(headerEncrypted) != "false" {
		t.Errorf("unknown path: %d", r.status)
	}
	if r := get(pathChat); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET chat: %d", r.status)
	}
}

func TestSecretExpires(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	if r := h.do(pathChat, &sec, chatBody("hi", "")); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	h.clk.Advance(DefaultSecretTTL)
	r := h.do(pathChat, &sec, chatBody("hi", ""))
	if r.status != 500 || string(r.body) != `{"error":{"message":"no secret for ID \"`+sec.ID+`\"","type":"","code":500}}` {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if h.s.Secrets() != 0 {
		t.Errorf("expired secret still stored")
	}
}
