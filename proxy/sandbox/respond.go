package sandbox

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// usage is the OpenAI usage object.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(r *reply) usage {
	n := r.completionTokens()
	return usage{r.promptTokens, n, r.promptTokens + n}
}

// anthropicStop maps a finish reason to an Anthropic stop_reason.
func anthropicStop(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	}
	return "end_turn"
}

// unaryBody renders the non-streamed response of a generation route.
func unaryBody(c *call, g *genRequest, r *reply) []byte {
	var v any
	switch c.rt.kind {
	case kindCompletions:
		v = map[string]any{
			"id": "cmpl-" + c.id, "object": "text_completion", "created": c.created, "model": g.Model,
			"choices": []any{map[string]any{"index": 0, "text": r.text(), "logprobs": nil, "finish_reason": r.finish}},
			"usage":   usageOf(r),
		}
	case kindMessages:
		var content []any
		if r.tool != nil {
			content = []any{map[string]any{"type": "tool_use", "id": r.tool.ID, "name": r.tool.Name, "input": json.RawMessage(r.tool.Args)}}
		} else {
			content = []any{map[string]any{"type": "text", "text": r.text()}}
		}
		v = map[string]any{
			"id": "msg_" + c.id, "type": "message", "role": "assistant", "model": g.Model, "content": content,
			"stop_reason": anthropicStop(r.finish), "stop_sequence": nil,
			"usage": map[string]int{"input_tokens": r.promptTokens, "output_tokens": r.completionTokens()},
		}
	default:
		msg := map[string]any{"role": "assistant", "content": r.text()}
		if r.tool != nil {
			msg["content"] = nil
			msg["tool_calls"] = []any{map[string]any{"id": r.tool.ID, "type": "function",
				"function": map[string]string{"name": r.tool.Name, "arguments": r.tool.Args}}}
		}
		v = map[string]any{
			"id": "chatcmpl-" + c.id, "object": "chat.completion", "created": c.created, "model": g.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": r.finish}},
			"usage":   usageOf(r),
		}
	}
	b, _ := json.Marshal(v) // only strings, numbers and valid raw JSON
	return b
}

// Embedding limits.
const (
	DefaultEmbeddingDims = 256
	maxEmbeddingDims     = 8192
	maxEmbeddingInputs   = 2048
)

// embedRequest is the decrypted /v1/embeddings request.
type embedRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

// inputs returns the texts to embed: a string, an array of strings, or
// token arrays (hashed as their JSON).
func (e *embedRequest) inputs() ([]string, bool) {
	var one string
	if json.Unmarshal(e.Input, &one) == nil {
		return []string{one}, true
	}
	var many []json.RawMessage
	if json.Unmarshal(e.Input, &many) != nil || len(many) == 0 {
		return nil, false
	}
	out := make([]string, len(many))
	for i, m := range many {
		if json.Unmarshal(m, &out[i]) != nil {
			out[i] = string(m)
		}
	}
	return out, true
}

func (c *call) embed(ctx *fasthttp.RequestCtx, plain []byte) {
	var e embedRequest
	if err := json.Unmarshal(plain, &e); err != nil {
		protocolError(ctx, fasthttp.StatusBadRequest, "invalid request JSON: "+err.Error())
		return
	}
	if !c.checkModel(ctx, e.Model) {
		return
	}
	in, ok := e.inputs()
	if !ok || len(in) > maxEmbeddingInputs {
		c.modelError(ctx, fasthttp.StatusBadRequest, "BadRequestError", "input must be a string or an array of up to 2048 inputs")
		return
	}
	dims := DefaultEmbeddingDims
	if e.Dimensions != nil {
		dims = *e.Dimensions
	}
	if dims < 1 || dims > maxEmbeddingDims {
		c.modelError(ctx, fasthttp.StatusBadRequest, "BadRequestError", "dimensions must be between 1 and 8192")
		return
	}
	b := make([]byte, 0, 64+len(in)*(dims*12+64))
	b = append(b, `{"id":"embd-`...)
	b = append(b, c.id...)
	b = append(b, `","object":"list","created":`...)
	b = appendInt(b, c.created)
	b = append(b, `,"model":`...)
	b = appendString(b, e.Model)
	b = append(b, `,"data":[`...)
	tokens := 0
	for i, text := range in {
		tokens += max(1, len(strings.Fields(text)))
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = appendInt(b, int64(i))
		b = append(b, `,"embedding":`...)
		vec := embedding(text, dims)
		if e.EncodingFormat == "base64" {
			raw := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendFloat32(b, f)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"usage":{"prompt_tokens":`...)
	b = appendInt(b, int64(tokens))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(tokens))
	b = append(b, "}}"...)
	c.send(ctx, fasthttp.StatusOK, c.rt.respPlain, b)
}

// appendString appends s as a JSON string literal.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends s escaped for a JSON string, without quotes, as
// encoding/json escapes it (invalid UTF-8 becomes U+FFFD).
func appendEscaped(b []byte, s string) []byte {
	const hexdig = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				b = append(b, s[start:i]...)
				if r == utf8.RuneError {
					b = append(b, `\ufffd`...)
				} else {
					b = append(b, `\u202`...)
					b = append(b, hexdig[r&0xf])
				}
				start = i + size
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexdig[c>>4], hexdig[c&0xf])
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}
