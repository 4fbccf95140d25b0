package gitlabapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
)

// BodyLimit is the most body Workhorse relays (its 4 MiB message limit
// minus room for the envelope); a body this long may have been cut.
const BodyLimit = 4<<20 - 4096

// PerPage is the page size every list request asks for: small enough that
// a page of issues or notes stays far below BodyLimit and a model's window.
const PerPage = 20

// ErrTruncated: the executor cut the response body.
var ErrTruncated = errors.New("GitLab's response was cut by the executor's 4 MiB limit; ask for less")

// Doer sends an action and waits for its answer (flow.Session does).
type Doer interface {
	Do(ctx context.Context, a *contract.Action) (*contract.ActionResponse, error)
}

// Client is GitLab's API as one session's executor reaches it.
type Client struct {
	d Doer
}

// New returns a Client sending its requests through d.
func New(d Doer) *Client { return &Client{d: d} }

// Response is a GitLab answer.
type Response struct {
	Status int
	Body   []byte
}

// StatusError is a non-2xx answer. Message is GitLab's "message"/"error"
// text, bounded; the body is not kept (it may hold user content).
type StatusError struct {
	Method, Path string
	Status       int
	Message      string
}

// Error implements error.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("GitLab answered %d to %s %s", e.Status, e.Method, e.Path)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Do sends one request; body, if not nil, is JSON-encoded. Non-2xx answers
// are *StatusError, cut bodies ErrTruncated, executor failures errors.
func (c *Client) Do(ctx context.Context, method, path string, body any) (Response, error) {
	req := &contract.RunHTTPRequest{Method: method, Path: path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, fmt.Errorf("encode %s %s: %w", method, pathOnly(path), err)
		}
		s := string(b)
		req.Body = &s
	}
	r, err := c.d.Do(ctx, &contract.Action{Action: &contract.Action_RunHTTPRequest{RunHTTPRequest: req}})
	if err != nil {
		return Response{}, err
	}
	var res Response
	switch x := r.GetResponseType().(type) {
	case *contract.ActionResponse_HttpResponse:
		h := x.HttpResponse
		if e := h.GetError(); e != "" {
			if strings.Contains(e, "size limit") {
				return Response{}, ErrTruncated
			}
			return Response{}, fmt.Errorf("executor failed %s %s: %s", method, pathOnly(path), bounded(e, 200))
		}
		res = Response{Status: int(h.GetStatusCode()), Body: []byte(h.GetBody())}
	case *contract.ActionResponse_PlainTextResponse:
		if e := x.PlainTextResponse.GetError(); e != "" {
			return Response{}, fmt.Errorf("executor failed %s %s: %s", method, pathOnly(path), bounded(e, 200))
		}
		return Response{}, fmt.Errorf("executor answered %s %s without an HTTP response", method, pathOnly(path))
	default:
		return Response{}, fmt.Errorf("executor answered %s %s with nothing", method, pathOnly(path))
	}
	if len(res.Body) >= BodyLimit {
		return Response{}, ErrTruncated
	}
	if res.Status < 200 || res.Status > 299 {
		return res, &StatusError{Method: method, Path: pathOnly(path), Status: res.Status, Message: errorMessage(res.Body)}
	}
	return res, nil
}

// JSON sends a request and decodes a 2xx JSON answer into out.
func (c *Client) JSON(ctx context.Context, method, path string, body, out any) error {
	r, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out == nil || len(r.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Body, out); err != nil {
		return fmt.Errorf("GitLab's answer to %s %s is not the JSON expected", method, pathOnly(path))
	}
	return nil
}

// Paged adds per_page=PerPage (and page) to a list path.
func Paged(path string, page int) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	p := path + sep + "per_page=" + fmt.Sprint(PerPage)
	if page > 1 {
		p += "&page=" + fmt.Sprint(page)
	}
	return p
}

// ProjectPath is /api/v4/projects/<id> for a numeric id or a full path.
func ProjectPath(id string) string {
	return "/api/v4/projects/" + url.PathEscape(id)
}

func errorMessage(body []byte) string {
	var e struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	if e.Error != "" {
		return bounded(e.Error, 200)
	}
	if s, ok := e.Message.(string); ok {
		return bounded(s, 200)
	}
	return ""
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
