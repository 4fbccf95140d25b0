package proxy

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// OpenAI error types we answer with. Clients switch on HTTP status first,
// then on type.
const (
	errInvalidRequest = "invalid_request_error"
	errAuthentication = "authentication_error"
	errNotFound       = "not_found_error"
	errRateLimit      = "rate_limit_error"
	errUnavailable    = "service_unavailable"
	errUpstream       = "upstream_error"
	errInternal       = "internal_error"
)

// apiError is an error answered to the client in OpenAI's shape. Its
// message is written for the caller and never carries internal details:
// those go to the log through cause.
type apiError struct {
	status  int
	typ     string
	code    string
	message string
	cause   error
	// retryAfter is passed on as Retry-After (rate limits).
	retryAfter string
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.message + ": " + e.cause.Error()
	}
	return e.message
}

func (e *apiError) Unwrap() error { return e.cause }

func newAPIError(status int, typ, message string, cause error) *apiError {
	return &apiError{status: status, typ: typ, message: message, cause: cause}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// marshalError renders e as OpenAI error JSON.
func marshalError(e *apiError) []byte {
	d := errorDetail{Message: e.message, Type: e.typ}
	if e.code != "" {
		c := e.code
		d.Code = &c
	}
	b, _ := json.Marshal(errorBody{Error: d})
	return b
}

// writeError answers ctx with e; the response says it was produced here,
// not decrypted from upstream.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.Response.Reset()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	if e.retryAfter != "" {
		ctx.Response.Header.Set("Retry-After", e.retryAfter)
	}
	ctx.SetBody(marshalError(e))
}

// jsonString quotes s as a JSON string.
func jsonString(s string) ([]byte, error) { return json.Marshal(s) }
