package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// callError wraps a transport failure. When ctx ended, the result always
// wraps ctx.Err(), whatever error the transport chose to report.
func callError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("call model: %w (%v)", cerr, err)
	}
	return fmt.Errorf("call model: %w", err)
}

type errorBody struct {
	Error *errorDetail `json:"error"`
}

type errorDetail struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"` // string, number or null depending on the server
}

// statusError turns a non-2xx answer into an *Error.
func (c *Client) statusError(req *http.Request, resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	b, err := readBounded(resp.Body, maxErrorBodyBytes, nil, resp.ContentLength)
	var eb errorBody
	if err == nil && json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Message != "" {
		e.Message, e.Type = eb.Error.Message, eb.Error.Type
		if e.Type == "" {
			var code string
			if json.Unmarshal(eb.Error.Code, &code) == nil {
				e.Type = code
			}
		}
	} else {
		e.Message = http.StatusText(resp.StatusCode)
		if e.Message == "" {
			e.Message = "status " + strconv.Itoa(resp.StatusCode)
		}
	}
	c.log.Debug("model call failed", "path", req.URL.Path, "status", e.Status, "type", e.Type)
	return e
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date; 0 when
// absent or invalid. It is capped at a day so a bogus value cannot park a
// caller.
func parseRetryAfter(v string, now time.Time) time.Duration {
	const maxRetryAfter = 24 * time.Hour
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}
