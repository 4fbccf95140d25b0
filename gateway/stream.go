package gateway

import (
	"bufio"
	"context"
	"errors"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
)

// errClientGone means a write to GitLab failed: the caller went away, so
// the model call is abandoned (which cancels it upstream).
var errClientGone = errors.New("the client closed the connection")

// streamWriter writes one streamed answer and flushes every write, so each
// model delta reaches GitLab at once. A failed write or flush marks the
// client gone; later writes fail fast.
type streamWriter struct {
	w    *bufio.Writer
	gone bool
}

// Write writes p and flushes it.
func (sw *streamWriter) Write(p []byte) (int, error) {
	if sw.gone {
		return 0, errClientGone
	}
	n, err := sw.w.Write(p)
	if err == nil {
		err = sw.w.Flush()
	}
	if err != nil {
		sw.gone = true
		return n, errClientGone
	}
	return n, nil
}

// WriteString writes s and flushes it.
func (sw *streamWriter) WriteString(s string) error {
	_, err := sw.Write([]byte(s))
	return err
}

// Gone reports whether the client went away.
func (sw *streamWriter) Gone() bool { return sw.gone }

// stream answers 200 with a streamed body of contentType and runs body in
// fasthttp's body writer, after the handler has returned, with a context
// bounded by timeout and the end of the server's drain. body must not touch c.ctx: it is
// reused once the handler returns, so everything body needs is captured
// before. An error from body is logged; writing it in the stream's own
// format is body's job, since the status line has already gone out.
func (c *call) stream(contentType string, timeout time.Duration, body func(ctx context.Context, w *streamWriter) error) {
	s, rt, reqID := c.s, c.route, c.requestID()
	c.ctx.SetContentType(contentType)
	c.ctx.Response.Header.Set("Cache-Control", "no-cache")
	c.ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// Not c.modelContext: its AfterFunc would be stopped when the handler
	// returns, before the stream is written. Watch the end of the server's
	// drain instead (not fasthttp's shutdown channel, which closes when the
	// drain starts: a draining replica finishes its streams).
	ctx, cancel := context.WithTimeoutCause(c.clientContext(), timeout, errDeadline)
	ctx = model.WithCall(ctx, c.modelCall())
	stopClient := c.takeClientStop()
	release := fastserve.Detach(c.ctx)
	drainOver := s.drainOver
	go func() {
		select {
		case <-drainOver:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.streams.Add(1)
	observed := c.streamObserver()
	c.ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		defer stopClient()
		defer s.streams.Add(-1)
		defer observed()
		defer cancel()
		sw := &streamWriter{w: w}
		if err := body(ctx, sw); err != nil {
			err = modelError(ctx, err)
			name := "unknown"
			if rt != nil {
				name = rt.name
			}
			if sw.Gone() {
				s.log.Debug("stream ended: client went away", "route", name, "request_id", reqID)
				return
			}
			s.log.Warn("stream ended with an error", "route", name, "request_id", reqID, "error", err.Error())
		}
	})
}
