package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/duo-confidential/duo-confidential/internal/sse"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

var (
	doneData      = []byte("[DONE]")
	finishReason  = []byte(`"finish_reason":"`)
	finishReason2 = []byte(`"finish_reason": "`)
)

// streamRelay is one upstream event stream being relayed to the client.
type streamRelay struct {
	route    *route
	resp     *http.Response
	sess     *envelope.Session
	secretID string          // the secret the stream is encrypted under
	ctx      context.Context // the upstream request's; done when the caller leaves
	cancel   context.CancelFunc
	timing   *timing
}

// streamEnd tracks what a stream must have carried before its end is
// believed: the relay between us and the backend can cut a stream short or
// forge its plain framing, never its encrypted fields.
type streamEnd struct {
	anthropic bool
	finished  bool // an encrypted event carried a finish or stop reason
	done      bool // [DONE] (OpenAI) or message_stop (Anthropic) arrived
}

// complete reports whether the stream may end now.
func (e *streamEnd) complete() bool { return e.finished && e.done }

var stopReason = []byte(`"stop_reason":"`)

// sawEvent notes a decrypted event; encrypted is whether it carried at
// least one encrypted field.
func (e *streamEnd) sawEvent(event string, plain []byte, encrypted bool) {
	if e.anthropic {
		if event == "message_stop" {
			e.done = true
		}
		// message_stop carries only plain fields; the stop reason comes
		// in message_delta's encrypted delta.
		if encrypted && event == "message_delta" && bytes.Contains(plain, stopReason) {
			e.finished = true
		}
		return
	}
	if encrypted && !e.finished && (bytes.Contains(plain, finishReason) || bytes.Contains(plain, finishReason2)) {
		e.finished = true
	}
}

// relayStream answers with an event stream whose events are the upstream's,
// decrypted one by one (the envelope counter runs on across events). The
// stream ends with an explicit error event, never silently, when upstream
// stalls for StreamIdleTimeout, breaks, sends something that does not
// decrypt, ends before a finish reason arrived in an encrypted event, or
// the secret it started with is no longer trusted. A [DONE] before any
// finish reason is not relayed, so SDKs read the error event rather than
// stopping at a forged [DONE].
func (s *Server) relayStream(ctx *fasthttp.RequestCtx, sr *streamRelay) {
	rt, resp, sess, cancel, tm := sr.route, sr.resp, sr.sess, sr.cancel, sr.timing
	ctx.SetStatusCode(resp.StatusCode)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	s.streams.Add(1)
	done := s.streamMetrics(sr.timing, resp.StatusCode)
	release := fastserve.Detach(ctx)
	idle := s.o.StreamIdleTimeout
	maxEvent := s.o.MaxEventSize
	log := s.log
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		defer s.streams.Add(-1)
		defer done()
		defer cancel()
		defer resp.Body.Close()
		var stalled atomic.Bool
		// The watchdog cancels the upstream request when no event arrives
		// for idle; the blocked read then fails and we report the stall.
		watchdog := time.AfterFunc(idle, func() { stalled.Store(true); cancel() })
		defer watchdog.Stop()

		// Events are written without a flush each; the reader flushes them
		// before it waits for upstream, so no event is held back while the
		// proxy waits, and a burst that arrived together leaves together
		// (one chunk and one write instead of one per event).
		fr := &flushingReader{src: tm.rec.hashing(resp.Body), w: w}
		r := sse.NewReader(fr, maxEvent)
		out := sse.NewWriter(w)
		var plainBuf []byte // reused for every decrypted event
		end := &streamEnd{anthropic: rt.anthropic}
		defer func() { s.streamReceipt(tm, resp.StatusCode, end.complete()) }()
		fail := func(msg string, err error) {
			tm.rec.cut = true
			log.Warn("stream ended with an error", "route", rt.name, "reason", msg, "error", err)
			writeStreamError(out, rt, msg)
			_ = w.Flush()
		}
		for {
			ev, err := r.Next()
			if err != nil {
				switch {
				case fr.clientErr != nil || errors.Is(context.Cause(sr.ctx), fastserve.ErrClientGone):
					return // the client went away: nothing to tell it
				case stalled.Load():
					fail("the confidential backend stopped sending for "+idle.String()+"; the stream was closed", err)
				case errors.Is(err, io.EOF):
					if !end.complete() {
						fail("the stream from the confidential backend ended before it was complete", nil)
					}
				case errors.Is(err, sse.ErrTruncated):
					fail("the stream from the confidential backend ended in the middle of an event", err)
				default:
					fail("the stream from the confidential backend broke off", err)
				}
				return
			}
			watchdog.Reset(idle)
			// A backend that stops attesting is no longer trusted, also
			// for what it is still sending.
			if !s.trusted(sr.secretID) {
				fail("the confidential backend is no longer trusted (its attestation failed); the stream was closed", nil)
				return
			}
			if !rt.anthropic && bytes.Equal(ev.Data, doneData) {
				if end.done {
					fail("the confidential backend sent more than one [DONE]", nil)
					return
				}
				end.done = true
				if !end.finished {
					// Held back: the stream ends with the error event
					// only, so no SDK stops at a [DONE] before it.
					continue
				}
				if out.WriteEvent(ev) != nil {
					return
				}
				continue
			}
			if end.done && !rt.anthropic {
				// Nothing may follow [DONE]: whatever does is not the
				// backend's answer to this request.
				fail("the confidential backend sent events after [DONE]", nil)
				return
			}
			before := sess.Decrypted()
			plain, err := tm.rec.decrypt(sess, plainBuf[:0], ev.Data, rt.respPlain)
			if err != nil {
				fail("an event from the confidential backend failed decryption; the stream was closed", err)
				return
			}
			end.sawEvent(ev.Event, plain, sess.Decrypted() > before)
			if end.anthropic && end.done && !end.finished {
				fail("the stream from the confidential backend ended without a stop reason", nil)
				return
			}
			if cap(plain) <= maxKeptEventBuf {
				plainBuf = plain
			} else {
				plainBuf = nil
			}
			ev.Data = plain
			// A failed write means the client went away: returning cancels
			// the upstream request and frees its connection.
			if out.WriteEvent(ev) != nil {
				return
			}
		}
	})
}

// trusted reports whether the secret a stream started with is still
// trusted: a source that can say so per secret (the trust manager) is
// asked; otherwise any current secret counts.
func (s *Server) trusted(secretID string) bool {
	if t, ok := s.o.Secrets.(interface{ Trusted(id string) bool }); ok {
		return t.Trusted(secretID)
	}
	_, err := s.o.Secrets.Current()
	return err == nil
}

// maxKeptEventBuf bounds the decryption buffer a stream keeps between
// events, so one huge event does not pin its memory for the whole stream.
const maxKeptEventBuf = 64 << 10

// flushingReader flushes the client writer before every read from
// upstream: everything decrypted so far reaches the client before the
// relay can block waiting for more.
type flushingReader struct {
	src       io.Reader
	w         *bufio.Writer
	clientErr error // the flush failed: the client went away
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if f.w.Buffered() > 0 {
		if err := f.w.Flush(); err != nil {
			f.clientErr = err
			return 0, err
		}
	}
	return f.src.Read(p)
}

// writeStreamError emits an error event the client's SDK recognises:
// OpenAI clients look for an "error" object in the data, Anthropic clients
// for an "error" event.
func writeStreamError(out *sse.Writer, rt *route, msg string) {
	if rt.anthropic {
		b := marshalAnthropicError(msg)
		_ = out.WriteEvent(sse.Event{Event: "error", Data: b})
		return
	}
	_ = out.WriteEvent(sse.Event{Data: marshalError(newAPIError(502, errUpstream, msg, nil))})
}

func marshalAnthropicError(msg string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"error","error":{"type":"api_error","message":`)
	q, _ := jsonString(msg)
	b.Write(q)
	b.WriteString(`}}`)
	return b.Bytes()
}
