package fastserve

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/valyala/fasthttp"
)

// Classify names a connection-level failure fasthttp reports before the
// handler runs, with the status it is answered with. The message is ours:
// fasthttp's error texts can quote request bytes (a header line with a
// token, the start of a body), so they are never logged or answered.
func Classify(err error) Failure {
	var small *fasthttp.ErrSmallBuffer
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		return Failure{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Message: "the request headers are too large"}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return Failure{Status: fasthttp.StatusRequestEntityTooLarge, Message: "the request body is too large"}
	case errors.As(err, &te) && te.Timeout():
		return Failure{Status: fasthttp.StatusRequestTimeout, Message: "the request was not received in time"}
	default:
		return Failure{Status: fasthttp.StatusBadRequest, Message: "malformed HTTP request"}
	}
}

// connError answers a failure fasthttp met while reading a request. The
// client may still be sending (an oversized body or header block), so the
// connection lingers after the answer: closing at once would reset it and
// the client would read "connection reset" instead of the status.
func (s *Server) connError(ctx *fasthttp.RequestCtx, err error) {
	f := Classify(err)
	if f.Status == fasthttp.StatusRequestEntityTooLarge {
		f.Message = fmt.Sprintf("the request body is larger than %d bytes", s.cfg.MaxRequestBody)
	}
	if f.Status == fasthttp.StatusRequestHeaderFieldsTooLarge {
		f.Message = fmt.Sprintf("the request headers are larger than %d bytes", s.cfg.ReadBufferSize)
	}
	s.log.Debug("request refused before the handler", "status", f.Status, "reason", f.Message)
	if lc, ok := ctx.Conn().(lingerer); ok {
		lc.lingerOnClose()
	}
	ctx.Response.Reset()
	s.refuse(ctx, f)
}

// quietLogger takes fasthttp's own log lines. Their arguments can hold
// request bytes (fasthttp formats the request and its parse errors into
// them), so it logs only what kind of failure was reported, never a
// formatted argument.
type quietLogger struct{ l *slog.Logger }

// Printf logs a constant message and the failure's class.
func (q quietLogger) Printf(_ string, args ...any) {
	kind := "other"
	for _, a := range args {
		err, ok := a.(error)
		if !ok {
			continue
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			kind = "timeout"
		default:
			kind = fmt.Sprint(Classify(err).Status)
		}
	}
	q.l.Debug("http connection error", "class", kind)
}
