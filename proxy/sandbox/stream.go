package sandbox

import (
	"bufio"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// faultChunks is how many token chunks a stream sends before a truncate or
// reset-midstream fault strikes (fewer if the reply is shorter).
const faultChunks = 3

// sse writes framed, sealed events of one stream. Its buffers live for the
// stream, so a chunk costs no allocation beyond what sealing needs.
type sse struct {
	c     *call
	w     *bufio.Writer
	plain envelope.Fields
	buf   []byte // chunk JSON
	out   []byte // sealed chunk
	timer *time.Timer
}

// event seals body and writes it as one SSE event, flushed. It reports
// false when the stream must stop (write error: the client left).
func (e *sse) event(name string, body []byte) bool {
	out, err := e.c.codec.appendSeal(e.out[:0], body, e.plain)
	if err != nil {
		e.c.s.log.Error("encrypt stream chunk", "err", err)
		return false
	}
	e.out = out
	if name != "" {
		_, _ = e.w.WriteString("event: ")
		_, _ = e.w.WriteString(name)
		_ = e.w.WriteByte('\n')
	}
	_, _ = e.w.WriteString("data: ")
	_, _ = e.w.Write(out)
	_, _ = e.w.WriteString("\n\n")
	return e.w.Flush() == nil
}

// pace waits one token interval (not before the first token). It reports
// false on shutdown.
func (e *sse) pace(first bool) bool {
	d := e.c.s.interval
	if d <= 0 || first {
		return !e.c.s.stopping()
	}
	if e.timer == nil {
		e.timer = time.NewTimer(d)
		e.timer.Stop()
	}
	return e.c.s.sleep(e.timer, d)
}

// stream answers a generation request as SSE.
func (c *call) stream(ctx *fasthttp.RequestCtx, g *genRequest, r *reply) {
	n := len(r.words)
	if r.tool != nil {
		n = len(argFragments(r.tool.Args))
	}
	cut := -1
	if c.fault == FaultTruncate || c.fault == FaultResetMidstream {
		cut = min(faultChunks, n-1)
	}
	run := func(w *bufio.Writer) bool {
		e := &sse{c: c, w: w, plain: c.rt.respPlain, buf: make([]byte, 0, 512), out: make([]byte, 0, 2048)}
		defer func() {
			if e.timer != nil {
				e.timer.Stop()
			}
		}()
		if c.rt.kind == kindMessages {
			return c.runMessages(e, g, r, cut)
		}
		return c.runChat(e, g, r, cut)
	}
	if c.fault == FaultResetMidstream {
		// Hijack to write the chunks straight to the socket, so they
		// reach the client before the RST does.
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(conn net.Conn) {
			head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
				"X-Sandbox: NOT CONFIDENTIAL\r\nTransfer-Encoding: chunked\r\n"
			if !c.encrypted {
				head += headerEncrypted + ": false\r\n"
			}
			if _, err := conn.Write([]byte(head + "\r\n")); err == nil {
				run(bufio.NewWriter(chunkedWriter{conn}))
			}
			resetConn(conn)
		})
		return
	}
	if !c.encrypted {
		ctx.Response.Header.Set(headerEncrypted, "false")
	}
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetContentType("text/event-stream")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) { run(w) })
}

// runChat streams chat or legacy completion chunks: one per token (tool
// arguments in fragments, the first with id, type and name), finish_reason
// on the last, continuous usage in each, then a usage chunk and [DONE]. It
// reports whether the stream completed.
func (c *call) runChat(e *sse, g *genRequest, r *reply, cut int) bool {
	pieces := r.words
	if r.tool != nil {
		pieces = argFragments(r.tool.Args)
	}
	object, idPrefix := "chat.completion.chunk", "chatcmpl-"
	switch c.rt.kind {
	case kindCompletions:
		object, idPrefix = "text_completion", "cmpl-"
	case kindTranscriptions:
		object, idPrefix = "transcription.chunk", "trsc-"
	}
	head := append([]byte(nil), `{"id":"`...)
	head = append(head, idPrefix...)
	head = append(head, c.id...)
	head = append(head, `","object":"`...)
	head = append(head, object...)
	head = append(head, `","created":`...)
	head = appendInt(head, c.created)
	head = append(head, `,"model":`...)
	head = appendString(head, g.Model)
	head = append(head, `,"choices":[`...)
	for i, p := range pieces {
		if i == cut || !e.pace(i == 0) {
			return false
		}
		b := append(e.buf[:0], head...)
		if c.rt.kind == kindCompletions {
			b = append(b, `{"index":0,"text":"`...)
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendEscaped(b, p)
			b = append(b, `","logprobs":null`...)
		} else {
			b = append(b, `{"index":0,"delta":{`...)
			if i == 0 {
				b = append(b, `"role":"assistant",`...)
			}
			if r.tool != nil {
				b = append(b, `"tool_calls":[{"index":0,`...)
				if i == 0 {
					b = append(b, `"id":`...)
					b = appendString(b, r.tool.ID)
					b = append(b, `,"type":"function","function":{"name":`...)
					b = appendString(b, r.tool.Name)
					b = append(b, ',')
				} else {
					b = append(b, `"function":{`...)
				}
				b = append(b, `"arguments":`...)
				b = appendString(b, p)
				b = append(b, "}}]"...)
			} else {
				b = append(b, `"content":"`...)
				if i > 0 {
					b = append(b, ' ')
				}
				b = appendEscaped(b, p)
				b = append(b, '"')
			}
			b = append(b, `},"logprobs":null`...)
		}
		b = append(b, `,"finish_reason":`...)
		if i == len(pieces)-1 && r.tool == nil {
			b = append(b, '"')
			b = append(b, r.finish...)
			b = append(b, '"')
		} else {
			b = append(b, "null"...)
		}
		b = append(b, "}],"...)
		b = appendUsage(b, r.promptTokens, i+1)
		b = append(b, '}')
		e.buf = b
		if !e.event("", b) {
			return false
		}
	}
	if r.tool != nil {
		// As OpenAI does, a tool call ends with its own chunk: an empty
		// delta carrying the finish reason, after the last fragment.
		b := append(e.buf[:0], head...)
		b = append(b, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
		b = append(b, r.finish...)
		b = append(b, `"}],`...)
		b = appendUsage(b, r.promptTokens, len(pieces))
		b = append(b, '}')
		e.buf = b
		if !e.event("", b) {
			return false
		}
	}
	b := append(e.buf[:0], head...)
	b = append(b, "],"...)
	b = appendUsage(b, r.promptTokens, len(pieces))
	b = append(b, '}')
	e.buf = b
	if !e.event("", b) {
		return false
	}
	_, _ = e.w.WriteString("data: [DONE]\n\n")
	return e.w.Flush() == nil
}

// runMessages streams Anthropic events: message_start, content_block_start,
// one content_block_delta per token (text_delta or input_json_delta),
// content_block_stop, message_delta with stop_reason and usage,
// message_stop. Anthropic streams have no [DONE].
func (c *call) runMessages(e *sse, g *genRequest, r *reply, cut int) bool {
	pieces := r.words
	if r.tool != nil {
		pieces = argFragments(r.tool.Args)
	}
	b := append(e.buf[:0], `{"type":"message_start","message":{"id":"msg_`...)
	b = append(b, c.id...)
	b = append(b, `","type":"message","role":"assistant","model":`...)
	b = appendString(b, g.Model)
	b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
	b = appendInt(b, int64(r.promptTokens))
	b = append(b, `,"output_tokens":0}}}`...)
	if !e.event("message_start", b) {
		return false
	}
	b = append(b[:0], `{"type":"content_block_start","index":0,"content_block":`...)
	if r.tool != nil {
		b = append(b, `{"type":"tool_use","id":`...)
		b = appendString(b, r.tool.ID)
		b = append(b, `,"name":`...)
		b = appendString(b, r.tool.Name)
		b = append(b, `,"input":{}}}`...)
	} else {
		b = append(b, `{"type":"text","text":""}}`...)
	}
	if !e.event("content_block_start", b) {
		return false
	}
	for i, p := range pieces {
		if i == cut || !e.pace(i == 0) {
			e.buf = b
			return false
		}
		b = append(b[:0], `{"type":"content_block_delta","index":0,"delta":`...)
		if r.tool != nil {
			b = append(b, `{"type":"input_json_delta","partial_json":`...)
			b = appendString(b, p)
		} else {
			b = append(b, `{"type":"text_delta","text":"`...)
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendEscaped(b, p)
			b = append(b, '"')
		}
		b = append(b, "}}"...)
		if !e.event("content_block_delta", b) {
			return false
		}
	}
	b = append(b[:0], `{"type":"content_block_stop","index":0}`...)
	if !e.event("content_block_stop", b) {
		return false
	}
	b = append(b[:0], `{"type":"message_delta","delta":{"stop_reason":"`...)
	b = append(b, anthropicStop(r.finish)...)
	b = append(b, `","stop_sequence":null},"usage":{"output_tokens":`...)
	b = appendInt(b, int64(len(pieces)))
	b = append(b, "}}"...)
	if !e.event("message_delta", b) {
		return false
	}
	b = append(b[:0], `{"type":"message_stop"}`...)
	e.buf = b
	return e.event("message_stop", b)
}

// chunkedWriter frames each Write as one HTTP/1.1 chunk (for the hijacked
// reset-midstream stream, which bypasses fasthttp's framing).
type chunkedWriter struct{ conn net.Conn }

func (cw chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b := make([]byte, 0, len(p)+16)
	b = strconv.AppendInt(b, int64(len(p)), 16)
	b = append(b, "\r\n"...)
	b = append(b, p...)
	b = append(b, "\r\n"...)
	if _, err := cw.conn.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = appendInt(b, int64(prompt))
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, int64(completion))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(prompt+completion))
	return append(b, '}')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

func appendFloat32(b []byte, f float32) []byte {
	return strconv.AppendFloat(b, float64(f), 'g', -1, 32)
}
