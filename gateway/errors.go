package gateway

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/valyala/fasthttp"
)

// Error is a failure answered to GitLab as {"detail": Detail} with Status,
// the shape FastAPI's HTTPException gives in GitLab's gateway. Cause is for
// the log only and never reaches the client.
type Error struct {
	Status     int
	Detail     string
	RetryAfter time.Duration
	Cause      error
}

// Error implements error; it includes the cause, so log it, do not send it.
func (e *Error) Error() string {
	s := strconv.Itoa(e.Status) + " " + e.Detail
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// errorf returns an *Error with a client-facing detail and an internal cause.
func errorf(status int, detail string, cause error) *Error {
	return &Error{Status: status, Detail: detail, Cause: cause}
}

// Client-facing texts GitLab's gateway uses (gitlab-ai-gateway.md §1.10) and ours.
const (
	detailValidation      = "Validation error"
	detailNotFound        = "Not Found"
	detailMethod          = "Method Not Allowed"
	detailInferenceFailed = "Inference failed"
	detailTooMany         = "Too many requests. Please try again later."
	detailNotReady        = "The confidential model backend is not ready: "
)

// errorBody renders {"detail": msg}.
func errorBody(msg string) []byte {
	b, err := json.Marshal(struct {
		Detail string `json:"detail"`
	}{msg})
	if err != nil { // a string always marshals
		return []byte(`{"detail":"internal error"}`)
	}
	return b
}

// writeError answers err in GitLab's shape: auth failures as the auth
// package renders them, *Error as {"detail"}, model failures mapped like
// GitLab's model_api_exception_handler (429 with Retry-After, 503
// "Inference failed"), anything else as a 500 without internal details.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.ResetBody()
	ctx.SetContentType("application/json")
	var ae *auth.Error
	if errors.As(err, &ae) {
		ctx.SetStatusCode(ae.Status)
		setRetryAfter(ctx, ae.RetryAfter)
		ctx.SetBody(ae.Body())
		return
	}
	e := asError(err)
	ctx.SetStatusCode(e.Status)
	setRetryAfter(ctx, e.RetryAfter)
	ctx.SetBody(errorBody(e.Detail))
}

// asError maps any handler error to the *Error GitLab is answered with.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var me *model.Error
	if errors.As(err, &me) {
		switch {
		case me.Status == fasthttp.StatusTooManyRequests:
			return &Error{Status: me.Status, Detail: detailTooMany, RetryAfter: me.RetryAfter, Cause: err}
		case me.Status == fasthttp.StatusServiceUnavailable && me.Type == "service_unavailable":
			// The proxy has no attested backend right now: say so.
			return &Error{Status: me.Status, Detail: detailNotReady + me.Message, RetryAfter: me.RetryAfter, Cause: err}
		case me.Status >= 400 && me.Status < 500:
			// The model refused the request (unknown model, context too
			// long): that is not retryable, and GitLab shows detail.
			return &Error{Status: fasthttp.StatusUnprocessableEntity, Detail: "the model rejected the request: " + me.Message, Cause: err}
		default:
			return &Error{Status: fasthttp.StatusServiceUnavailable, Detail: detailInferenceFailed, RetryAfter: me.RetryAfter, Cause: err}
		}
	}
	if errors.Is(err, errDeadline) {
		return &Error{Status: fasthttp.StatusGatewayTimeout, Detail: "the model did not answer in time", Cause: err}
	}
	return &Error{Status: fasthttp.StatusInternalServerError, Detail: "Internal server error", Cause: err}
}

func setRetryAfter(ctx *fasthttp.RequestCtx, d time.Duration) {
	if d > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
	}
}

// misdirected maps a model failure on a /v1/prompts route to GitLab's 421
// {"detail": "<status>: <reason>"} ("the model, not the gateway, failed"),
// which the Test connection button shows as the model server's code.
func misdirected(err error) error {
	var me *model.Error
	if errors.As(err, &me) {
		return &Error{Status: fasthttp.StatusMisdirectedRequest, Detail: strconv.Itoa(me.Status) + ": " + me.Message, RetryAfter: me.RetryAfter, Cause: err}
	}
	if errors.Is(err, errDeadline) {
		return &Error{Status: fasthttp.StatusMisdirectedRequest, Detail: "504: the model did not answer in time", Cause: err}
	}
	return err
}
