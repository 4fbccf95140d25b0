package appliance_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// TestSDKChat drives chat through the proxy with the official OpenAI Go
// SDK, unary and streamed, against sandboxes presenting TDX and SEV-SNP
// evidence.
func TestSDKChat(t *testing.T) {
	for _, platform := range []string{sandbox.PlatformTDX, sandbox.PlatformSNP} {
		t.Run(platform, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envOptions{Platform: platform})
			if st := e.app.Status(); st == nil || st.Attestation == nil || st.Attestation.Platform != attest.Platform(platform) {
				t.Fatalf("status after attestation: %+v", st)
			}
			c := e.client()
			params := openai.ChatCompletionNewParams{
				Model: sandbox.ModelChat,
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("You are a helpful assistant."),
					openai.UserMessage("Hello from the OpenAI Go SDK on " + platform),
				},
				MaxTokens: openai.Int(12),
			}
			got, err := c.Chat.Completions.New(e.ctx(), params)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("choices: %+v", got.Choices)
			}
			want := "Sandbox reply to: Hello from the OpenAI Go SDK on " + platform
			content := got.Choices[0].Message.Content
			if !strings.HasPrefix(content, want) || len(strings.Fields(content)) != 12 {
				t.Errorf("content %q: want %q… of 12 words", content, want)
			}
			if got.Choices[0].FinishReason != "length" || got.Model != sandbox.ModelChat || got.Usage.CompletionTokens != 12 {
				t.Errorf("finish %q, model %q, usage %+v", got.Choices[0].FinishReason, got.Model, got.Usage)
			}

			stream := c.Chat.Completions.NewStreaming(e.ctx(), params)
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("accumulator refused chunk %d", chunks)
				}
				chunks++
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if chunks < 12 {
				t.Errorf("%d chunks, want one per token (12) plus usage", chunks)
			}
			if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != content {
				t.Fatalf("streamed content %q, want the unary reply %q", acc.Choices[0].Message.Content, content)
			}
			if acc.Choices[0].FinishReason != "length" {
				t.Errorf("streamed finish reason %q", acc.Choices[0].FinishReason)
			}
		})
	}
}

// weatherTool is a tool whose arguments the sandbox fills from its schema.
func weatherTool() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Get the weather for a city"),
		Parameters: shared.FunctionParameters{
			"type": "object",
			"properties": map[string]any{
				"location": map[string]any{"type": "string", "description": "City name"},
				"days":     map[string]any{"type": "integer"},
				"metric":   map[string]any{"type": "boolean"},
				"fields":   map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			},
			"required": []string{"location"},
		},
	})
}

// TestSDKToolCallStream checks streamed tool-call argument deltas are
// reassembled by the SDK into exactly the unary arguments.
func TestSDKToolCallStream(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	c := e.client()
	params := openai.ChatCompletionNewParams{
		Model:      sandbox.ModelChat,
		Messages:   []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Zürich — ünïcode ✓ — this week?")},
		Tools:      []openai.ChatCompletionToolUnionParam{weatherTool()},
		ToolChoice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}),
	}
	unary, err := c.Chat.Completions.New(e.ctx(), params)
	if err != nil {
		t.Fatal(err)
	}
	if len(unary.Choices) != 1 || len(unary.Choices[0].Message.ToolCalls) != 1 || unary.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("unary answer: %+v", unary.Choices)
	}
	want := unary.Choices[0].Message.ToolCalls[0]
	var wantArgs map[string]any
	if err := json.Unmarshal([]byte(want.Function.Arguments), &wantArgs); err != nil {
		t.Fatalf("unary arguments %q are not JSON: %v", want.Function.Arguments, err)
	}
	if wantArgs["days"] != float64(42) || wantArgs["metric"] != true || !strings.HasPrefix(wantArgs["location"].(string), "sandbox: What is the weather") {
		t.Errorf("unary arguments %v", wantArgs)
	}

	stream := c.Chat.Completions.NewStreaming(e.ctx(), params)
	var acc openai.ChatCompletionAccumulator
	deltas := 0
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 && len(ch.Choices[0].Delta.ToolCalls) > 0 {
			deltas++
		}
		if !acc.AddChunk(ch) {
			t.Fatal("accumulator refused a chunk")
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if deltas < 2 {
		t.Errorf("arguments came in %d deltas; the sandbox streams them in fragments", deltas)
	}
	if len(acc.Choices) != 1 || len(acc.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("accumulated: %+v", acc.Choices)
	}
	got := acc.Choices[0].Message.ToolCalls[0]
	if got.ID != want.ID || got.Function.Name != want.Function.Name || got.Function.Arguments != want.Function.Arguments {
		t.Errorf("streamed tool call %s %s(%s), want %s %s(%s)", got.ID, got.Function.Name, got.Function.Arguments,
			want.ID, want.Function.Name, want.Function.Arguments)
	}
	var gotArgs map[string]any
	if err := json.Unmarshal([]byte(got.Function.Arguments), &gotArgs); err != nil || !reflect.DeepEqual(gotArgs, wantArgs) {
		t.Errorf("streamed arguments %q (%v), want %v", got.Function.Arguments, err, wantArgs)
	}
	if acc.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("streamed finish reason %q", acc.Choices[0].FinishReason)
	}
}

// TestSDKCompletions covers legacy completions: continuation, streamed, and
// fill-in-the-middle with a suffix.
func TestSDKCompletions(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	c := e.client()
	prompt, suffix := "func add(a, b int) int {", "\n}"

	fim, err := c.Completions.New(e.ctx(), openai.CompletionNewParams{
		Model:     sandbox.ModelCode,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		Suffix:    openai.String(suffix),
		MaxTokens: openai.Int(8),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(prompt + "\x00" + suffix))
	if want := "/* sandbox fill-in-the-middle " + hex.EncodeToString(h[:4]) + " */"; len(fim.Choices) != 1 || fim.Choices[0].Text != want {
		t.Errorf("fill-in-the-middle %+v, want text %q", fim.Choices, want)
	}

	params := openai.CompletionNewParams{
		Model:     sandbox.ModelCode,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens: openai.Int(10),
	}
	cont, err := c.Completions.New(e.ctx(), params)
	if err != nil {
		t.Fatal(err)
	}
	text := cont.Choices[0].Text
	if !strings.HasPrefix(text, "Sandbox completion after: func add(a, b int) int {") || cont.Choices[0].FinishReason != "length" {
		t.Errorf("completion %+v", cont.Choices)
	}
	stream := c.Completions.NewStreaming(e.ctx(), params)
	var streamed strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			streamed.WriteString(ch.Choices[0].Text)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if streamed.String() != text {
		t.Errorf("streamed completion %q, want %q", streamed.String(), text)
	}
}

// TestSDKEmbeddings checks dimensions are honoured and vectors are unit
// length and deterministic.
func TestSDKEmbeddings(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	c := e.client()
	inputs := []string{"confidential code", "another input", "confidential code"}
	got, err := c.Embeddings.New(e.ctx(), openai.EmbeddingNewParams{
		Model:      sandbox.ModelEmbed,
		Input:      openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
		Dimensions: openai.Int(64),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != len(inputs) {
		t.Fatalf("%d embeddings for %d inputs", len(got.Data), len(inputs))
	}
	for i, d := range got.Data {
		if d.Index != int64(i) || len(d.Embedding) != 64 {
			t.Fatalf("embedding %d: index %d, %d dimensions, want 64", i, d.Index, len(d.Embedding))
		}
		var sum float64
		for _, f := range d.Embedding {
			sum += f * f
		}
		if math.Abs(math.Sqrt(sum)-1) > 1e-4 {
			t.Errorf("embedding %d has norm %v, want 1", i, math.Sqrt(sum))
		}
	}
	if !slices.Equal(got.Data[0].Embedding, got.Data[2].Embedding) || slices.Equal(got.Data[0].Embedding, got.Data[1].Embedding) {
		t.Error("embeddings are not a deterministic function of the input")
	}
	one, err := c.Embeddings.New(e.ctx(), openai.EmbeddingNewParams{
		Model: sandbox.ModelEmbed,
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("confidential code")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Data) != 1 || len(one.Data[0].Embedding) != sandbox.DefaultEmbeddingDims {
		t.Errorf("default dimensions: %d", len(one.Data[0].Embedding))
	}
}

// TestSDKModels lists and retrieves models; an unknown model is a 404.
func TestSDKModels(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	c := e.client()
	page, err := c.Models.List(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	for _, want := range []string{sandbox.ModelChat, sandbox.ModelCode, sandbox.ModelEmbed, sandbox.ModelWhisper} {
		if !slices.Contains(ids, want) {
			t.Errorf("models %v lack %s", ids, want)
		}
	}
	m, err := c.Models.Get(e.ctx(), sandbox.ModelCode)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != sandbox.ModelCode || m.OwnedBy != sandbox.OwnedBy {
		t.Errorf("model %+v", m)
	}
	_, err = c.Models.Get(e.ctx(), "no-such-model")
	if err == nil {
		t.Fatal("retrieving an unknown model succeeded")
	}
	if apiErr := asAPIError(t, err); apiErr.StatusCode != http.StatusNotFound || apiErr.Message == "" {
		t.Errorf("unknown model: HTTP %d %q", apiErr.StatusCode, apiErr.Message)
	}
}

// TestAnthropicMessages sends Anthropic Messages requests: unary, and a
// stream whose event: lines must survive the proxy up to message_stop.
func TestAnthropicMessages(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	body := func(stream bool) string {
		b, _ := json.Marshal(map[string]any{
			"model":      sandbox.ModelChat,
			"max_tokens": 6,
			"stream":     stream,
			"system":     "Be brief.",
			"messages":   []map[string]string{{"role": "user", "content": "Hello Anthropic route"}},
		})
		return string(b)
	}
	r := e.post("/v1/messages", body(false), "anthropic-version", "2023-06-01")
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", r.status, r.body)
	}
	var msg struct {
		Type       string `json:"type"`
		StopReason string `json:"stop_reason"`
		Content    []struct {
			Type, Text string
		} `json:"content"`
	}
	if err := json.Unmarshal(r.body, &msg); err != nil || msg.Type != "message" || len(msg.Content) != 1 {
		t.Fatalf("message %s (%v)", r.body, err)
	}
	text := msg.Content[0].Text
	if !strings.HasPrefix(text, "Sandbox reply to: Hello Anthropic route") || msg.StopReason != "max_tokens" {
		t.Errorf("message %+v", msg)
	}

	r = e.post("/v1/messages", body(true), "anthropic-version", "2023-06-01")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: HTTP %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	evs := parseSSE(t, r.body)
	var names []string
	var streamed strings.Builder
	for _, ev := range evs {
		var d struct {
			Type  string `json:"type"`
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			t.Fatalf("event %q data is not JSON: %s", ev.event, ev.data)
		}
		if ev.event == "" || d.Type != ev.event {
			t.Errorf("event line %q does not match data type %q", ev.event, d.Type)
		}
		if ev.event == "content_block_delta" {
			streamed.WriteString(d.Delta.Text)
		}
		names = append(names, ev.event)
	}
	if len(names) < 6 || names[0] != "message_start" || names[len(names)-1] != "message_stop" ||
		!slices.Contains(names, "content_block_delta") || !slices.Contains(names, "message_delta") {
		t.Errorf("events %v", names)
	}
	if hasDone(evs) {
		t.Error("an Anthropic stream got an OpenAI [DONE]")
	}
	if streamed.String() != text {
		t.Errorf("streamed text %q, want the unary %q", streamed.String(), text)
	}
}

// wavFile makes a small 16 kHz mono PCM WAV file with a tone.
func wavFile(samples int) []byte {
	var data bytes.Buffer
	for i := range samples {
		v := int16(8000 * math.Sin(2*math.Pi*440*float64(i)/16000))
		_ = binary.Write(&data, binary.LittleEndian, v)
	}
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+data.Len()))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(16000), uint32(32000), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(data.Len()))
	b.Write(data.Bytes())
	return b.Bytes()
}

// TestSDKTranscription sends a multipart transcription with the SDK.
func TestSDKTranscription(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	c := e.client()
	wav := wavFile(4000)
	got, err := c.Audio.Transcriptions.New(e.ctx(), openai.AudioTranscriptionNewParams{
		File:     openai.File(bytes.NewReader(wav), "clip.wav", "audio/wav"),
		Model:    sandbox.ModelWhisper,
		Language: openai.String("en"),
		Prompt:   openai.String("A short tone."),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(wav)
	if want := "Sandbox transcription " + hex.EncodeToString(h[:4]) + ":"; !strings.HasPrefix(got.Text, want) {
		t.Errorf("transcription %q, want %q…", got.Text, want)
	}
}
