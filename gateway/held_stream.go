package gateway

import (
	"context"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// streamCall is one streaming model call: it reports each delta to
// onDelta, and stops (returning onDelta's error) when onDelta fails.
type streamCall func(ctx context.Context, onDelta func(text string) error) (model.Result, error)

// chatStream is the streamCall of a chat request.
func (s *Server) chatStream(req model.ChatRequest) streamCall {
	return func(ctx context.Context, onDelta func(string) error) (model.Result, error) {
		return s.o.Model.ChatStream(ctx, req, onDelta)
	}
}

// heldStream is a streaming model call whose HTTP status waits for the
// model's first text, as GitLab's gateway awaits the model's first chunk
// before it answers. A model that fails before writing anything (unknown
// model, rate limit, backend not attested, too slow) is then answered with
// a real status and GitLab's error shape, instead of a 200 with an empty
// body that GitLab would show as an empty answer.
type heldStream struct {
	deltas chan string   // handed over one at a time
	exited chan struct{} // closed when the model call has returned
	ctx    context.Context
	stop   context.CancelCauseFunc
	cancel context.CancelFunc
	first  string
	// res and err are written before exited is closed; read them only
	// after seeing it closed.
	res model.Result
	err error
}

// holdStream starts call bounded by timeout and waits for its first
// non-empty delta or its end. It returns the call's error (attributed to
// the deadline when that ended it) if the model failed before producing
// text; otherwise the caller relays the stream with next, or with relay.
func (s *Server) holdStream(c *call, timeout time.Duration, call streamCall) (*heldStream, error) {
	mctx, cancel := c.modelContext(timeout)
	ctx, stop := context.WithCancelCause(mctx)
	h := &heldStream{deltas: make(chan string), exited: make(chan struct{}), ctx: mctx, stop: stop, cancel: cancel}
	go func() {
		defer close(h.exited)
		res, err := call(ctx, func(text string) error {
			if text == "" {
				return nil
			}
			select {
			case h.deltas <- text:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
		h.res, h.err = res, modelError(mctx, err)
	}()
	first, ok := h.next()
	if !ok && h.err != nil {
		h.close(nil)
		return nil, h.err
	}
	h.first = first
	return h, nil
}

// next returns the next delta, or false once the call has returned.
// Deltas are handed over synchronously, so none is pending then.
func (h *heldStream) next() (string, bool) {
	select {
	case d := <-h.deltas:
		return d, true
	case <-h.exited:
		return "", false
	}
}

// all yields the first delta and every later one, in order (a range-over-func iterator).
func (h *heldStream) all(yield func(string) bool) {
	if h.first != "" && !yield(h.first) {
		return
	}
	for d, ok := h.next(); ok; d, ok = h.next() {
		if !yield(d) {
			return
		}
	}
}

// close stops the call (with cause, e.g. errAnswerComplete, or nil),
// waits for it to return and releases its context.
func (h *heldStream) close(cause error) {
	h.stop(cause)
	<-h.exited
	h.cancel()
}

// result waits for the call to return and gives its outcome.
func (h *heldStream) result() (model.Result, error) {
	<-h.exited
	return h.res, h.err
}

// relay answers 200 with contentType and writes every delta with chunk,
// then, if the model finished cleanly, calls end with the result (for a
// trailing usage line). It must be the handler's last action. A failed
// write means GitLab went away: the model call is cancelled.
func (h *heldStream) relay(c *call, contentType string, timeout time.Duration,
	chunk func(w *streamWriter, text string) error, end func(w *streamWriter, res model.Result) error) {
	c.stream(contentType, timeout, func(_ context.Context, w *streamWriter) error {
		defer h.close(nil)
		for text := range h.all {
			if err := chunk(w, text); err != nil {
				return err
			}
		}
		res, err := h.result()
		if err != nil {
			// The status line has gone out; raw text streams have no
			// error format, so the stream just ends (and is logged).
			return err
		}
		if end != nil {
			return end(w, res)
		}
		return nil
	})
}
