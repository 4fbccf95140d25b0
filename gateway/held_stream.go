package gateway

import (
	"context"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// heldStream is a streaming chat call whose HTTP status waits for the
// model's first text. A model that fails before writing anything (unknown
// model, rate limit, backend not attested, too slow) is then answered
// with a real status and GitLab's error shape, instead of a 200 with an
// empty body that GitLab would show as an empty answer.
type heldStream struct {
	deltas chan string // closed when the model call has returned
	cancel context.CancelFunc
	first  string
	// res and err are written before deltas is closed; read them only
	// after seeing it closed.
	res model.Result
	err error
}

// holdStream starts req as a streaming call bounded by timeout and waits
// for its first non-empty delta or its end. It returns the call's error
// (attributed to the deadline when that ended it) if the model failed
// before producing text; otherwise the stream is relayed with relay.
func (s *Server) holdStream(c *call, timeout time.Duration, req model.ChatRequest) (*heldStream, error) {
	ctx, cancel := c.modelContext(timeout)
	h := &heldStream{deltas: make(chan string, 16), cancel: cancel}
	go func() {
		defer close(h.deltas)
		res, err := s.o.Model.ChatStream(ctx, req, func(text string) error {
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
		h.res, h.err = res, modelError(ctx, err)
	}()
	first, ok := <-h.deltas
	if !ok {
		cancel()
		if h.err != nil {
			return nil, h.err
		}
	}
	h.first = first
	return h, nil
}

// relay answers 200 with contentType and writes every delta with chunk,
// then, if the model finished cleanly, calls end with the result (for a
// trailing usage line). It must be the handler's last action. A failed
// write means GitLab went away: the model call is cancelled.
func (h *heldStream) relay(c *call, contentType string, timeout time.Duration,
	chunk func(w *streamWriter, text string) error, end func(w *streamWriter, res model.Result) error) {
	c.stream(contentType, timeout, func(ctx context.Context, w *streamWriter) error {
		// Server shutdown or the stream's own deadline also end the call.
		stop := context.AfterFunc(ctx, h.cancel)
		defer stop()
		defer h.cancel()
		var werr error
		if h.first != "" {
			werr = chunk(w, h.first)
		}
		for text := range h.deltas {
			if werr != nil {
				h.cancel()
				continue // drain until the model call has returned
			}
			werr = chunk(w, text)
		}
		if werr != nil {
			return werr
		}
		if h.err != nil {
			// The status line has gone out; raw text streams have no
			// error format, so the stream just ends (and is logged).
			return h.err
		}
		if end != nil {
			return end(w, h.res)
		}
		return nil
	})
}
