package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Messages sent to clients. They are the exact strings GitLab's AI Gateway
// answers with (ai_gateway/api/middleware authentication backend and the
// endpoints), because GitLab Rails and support runbooks match on them.
const (
	MsgNoAuthorization   = "No authorization header presented"
	MsgInvalidAuthHeader = "Invalid authorization header"
	MsgInvalidAuthType   = "Invalid authentication token type - only OIDC is supported"
	MsgForbidden         = "Forbidden by auth provider"
	// MsgKeysNotReady is ours: GitLab's gateway has no 503 for this case
	// (it answers 401 or "No keys founds in JWKS; are OIDC providers up?").
	MsgKeysNotReady = "Waiting for GitLab keys: JWKS not loaded yet, retry shortly"
	// MsgUserAccessTokenForbidden is the 403 of POST /v1/code/user_access_token.
	MsgUserAccessTokenForbidden = "Unauthorized to create user access token"
	// MsgSigningFailed is the 500 of POST /v1/code/user_access_token.
	MsgSigningFailed = "Failed to generate JWT"
)

// ErrKeysNotReady is returned (wrapped in an *Error with Status 503) when the
// key source of the token's issuer has no keys yet. A KeySource may also
// return it (or wrap it) itself to signal that state.
var ErrKeysNotReady = errors.New("auth: signing keys not ready")

// NotReadyReporter is implemented by KeySource errors that mean "keys not
// loaded yet" (e.g. jwks.ErrNotReady may implement it). Such errors turn into
// 503 instead of 401.
type NotReadyReporter interface {
	NotReady() bool
}

// Error is an authentication or authorization failure to answer to the
// client. Status is 401, 403, 500 or 503; Message is the client-facing text
// (GitLab's exact string); Reason is an internal detail for logs only and
// must never be sent to the client. It is errors.As-able, and errors.Is
// reaches the cause (e.g. ErrKeysNotReady).
type Error struct {
	Status  int
	Message string
	Reason  string
	// RetryAfter is a hint for the Retry-After header (set on 503).
	RetryAfter time.Duration
	cause      error
}

// Error implements error. It includes the internal reason: log it, do not
// send it.
func (e *Error) Error() string {
	s := fmt.Sprintf("auth: %d %s", e.Status, e.Message)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Body returns the JSON body GitLab's gateway sends for this error: the auth
// middleware's {"error": msg} for 401 and 503, FastAPI's {"detail": msg}
// for 403 and 500.
func (e *Error) Body() []byte {
	key := "detail"
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusServiceUnavailable {
		key = "error"
	}
	b, err := json.Marshal(map[string]string{key: e.Message})
	if err != nil { // cannot happen for a map of strings
		return []byte(`{"error":"internal error"}`)
	}
	return b
}

// WithMessage returns a copy of e with a different client message, for
// routes whose 403 text differs (e.g. "Unauthorized to access code
// completions").
func (e *Error) WithMessage(msg string) *Error {
	c := *e
	c.Message = msg
	return &c
}

// Forbidden returns a 403 error with the given client message.
func Forbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Message: msg}
}

func unauthorized(msg, reason string) *Error {
	return &Error{Status: http.StatusUnauthorized, Message: msg, Reason: reason}
}

// forbiddenToken is the catch-all 401 for every token-level failure.
func forbiddenToken(reason string, cause error) *Error {
	return &Error{Status: http.StatusUnauthorized, Message: MsgForbidden, Reason: reason, cause: cause}
}

func notReady(reason string, cause error) *Error {
	if cause == nil {
		cause = ErrKeysNotReady
	} else if !errors.Is(cause, ErrKeysNotReady) {
		cause = fmt.Errorf("%w: %w", ErrKeysNotReady, cause)
	}
	return &Error{
		Status:     http.StatusServiceUnavailable,
		Message:    MsgKeysNotReady,
		Reason:     reason,
		RetryAfter: 5 * time.Second,
		cause:      cause,
	}
}

func headerMismatch(header string) *Error {
	return unauthorized("Header mismatch '"+header+"'", "")
}
