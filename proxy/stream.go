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

	"github.com/duo-confidential/duo-confidential/internal/sse"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

var (
	doneData      = []byte("[DONE]")
	finishReason  = []byte(`"finish_reason":"`)
	finishReason2 = []byte(`"finish_reason": "`)
)

// relayStream answers with an event stream whose events are the upstream's,
// decrypted one by one (the envelope counter runs on across events). The
// stream ends with an explicit error event, never silently, when upstream
// stalls for StreamIdleTimeout, breaks, sends something that does not
// decrypt, ends before completing, or is no longer trusted (Secrets.Current
// fails: the trust manager revoked the secret after a failed attestation).
func (s *Server) relayStream(ctx *fasthttp.RequestCtx, rt *route, resp *http.Response, sess *envelope.Session, cancel context.CancelFunc, tm *timing) {
	ctx.SetStatusCode(resp.StatusCode)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	s.streams.Add(1)
	done := s.streamMetrics(tm, resp.StatusCode)
	idle := s.o.StreamIdleTimeout
	maxEvent := s.o.MaxEventSize
	log := s.log
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
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
		fr := &flushingReader{src: resp.Body, w: w}
		r := sse.NewReader(fr, maxEvent)
		out := sse.NewWriter(w)
		var plainBuf []byte // reused for every decrypted event
		var sawDone, sawFinish bool
		fail := func(msg string, err error) {
			log.Warn("stream ended with an error", "route", rt.name, "reason", msg, "error", err)
			writeStreamError(out, rt, msg)
			_ = w.Flush()
		}
		for {
			ev, err := r.Next()
			if err != nil {
				switch {
				case fr.clientErr != nil:
					return // the client went away: nothing to tell it
				case stalled.Load():
					fail("the confidential backend stopped sending for "+idle.String()+"; the stream was closed", err)
				case errors.Is(err, io.EOF):
					if rt.anthropic && !sawDone || !rt.anthropic && !(sawDone && sawFinish) {
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
			// for what it is still sending: no secret means the trust
			// manager revoked it (one atomic load per event).
			if _, err := s.o.Secrets.Current(); err != nil {
				fail("the confidential backend is no longer trusted (its attestation failed); the stream was closed", err)
				return
			}
			if !rt.anthropic && bytes.Equal(ev.Data, doneData) {
				sawDone = true
				if out.WriteEvent(ev) != nil {
					return
				}
				continue
			}
			plain, err := sess.AppendDecryptJSON(plainBuf[:0], ev.Data, rt.respPlain)
			if err != nil {
				fail("an event from the confidential backend failed decryption; the stream was closed", err)
				return
			}
			if rt.anthropic {
				if ev.Event == "message_stop" {
					sawDone = true
				}
			} else if !sawFinish && (bytes.Contains(plain, finishReason) || bytes.Contains(plain, finishReason2)) {
				sawFinish = true
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
