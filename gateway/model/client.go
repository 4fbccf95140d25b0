package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/sse"
)

const (
	defaultMaxResponseBytes  = 16 << 20
	defaultMaxEventBytes     = 1 << 20
	defaultStreamIdleTimeout = 2 * time.Minute

	// maxErrorBodyBytes bounds the read of a non-2xx body: an error is a
	// few hundred bytes, anything longer is not the shape we parse.
	maxErrorBodyBytes = 64 << 10

	// doneDrainTimeout bounds the wait for the end of the response body
	// after [DONE]. Reading to the end is what lets the transport keep the
	// connection; a proxy that lingers only costs that connection.
	doneDrainTimeout = time.Second

	// maxPooledBuf keeps one huge answer from pinning its buffer.
	maxPooledBuf = 1 << 20

	// baseURL is a placeholder: Dial decides where requests go, the host
	// only fills the Host header.
	baseURL = "http://proxy.internal"

	errTypeUpstream = "upstream_error"
)

// Options configures a Client.
type Options struct {
	// Dial opens a connection to the proxy (the appliance passes an
	// in-memory listener's Dial); required.
	Dial func(ctx context.Context) (net.Conn, error)
	// Token is the proxy's inbound bearer token, if the proxy requires one
	// ("" = none).
	Token string
	// MaxResponseBytes bounds a unary response body; <= 0 means 16 MiB.
	MaxResponseBytes int
	// MaxEventBytes bounds one server-sent event of a stream; <= 0 means
	// 1 MiB.
	MaxEventBytes int
	// StreamIdleTimeout ends a stream with a 504 *Error when no event (or,
	// before the first, no response) arrives for this long; <= 0 means 2m.
	StreamIdleTimeout time.Duration
	// Logger receives failures (never prompt or completion text); nil
	// discards.
	Logger *slog.Logger
}

// Client is an OpenAI-compatible client of the attesting proxy. It is safe
// for concurrent use and keeps connections alive between calls.
type Client struct {
	tr *http.Transport

	chatURL, completionsURL, modelsURL *url.URL
	// Shared, never-mutated request headers: the transport only reads them,
	// so one map per shape saves building one per call.
	hdrJSON, hdrStream, hdrGet http.Header

	maxResp  int
	maxEvent int
	idle     time.Duration
	log      *slog.Logger

	readers sync.Pool // *sse.Reader with maxEvent: their 64 KiB buffers are reused
}

// New returns a Client for o. It fails when o.Dial is missing or o.Token
// cannot be sent in a header.
func New(o Options) (*Client, error) {
	if o.Dial == nil {
		return nil, errors.New("model: Options.Dial is required")
	}
	for i := 0; i < len(o.Token); i++ {
		if c := o.Token[i]; c < 0x20 || c == 0x7f {
			return nil, errors.New("model: Options.Token contains a control character")
		}
	}
	c := &Client{
		maxResp:  o.MaxResponseBytes,
		maxEvent: o.MaxEventBytes,
		idle:     o.StreamIdleTimeout,
		log:      o.Logger,
	}
	if c.maxResp <= 0 {
		c.maxResp = defaultMaxResponseBytes
	}
	if c.maxEvent <= 0 {
		c.maxEvent = defaultMaxEventBytes
	}
	if c.idle <= 0 {
		c.idle = defaultStreamIdleTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	dial := o.Dial
	c.tr = &http.Transport{
		Proxy: nil, // never from the environment: requests must reach Dial
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx)
		},
		DisableCompression:  true, // in-memory: gzip only costs CPU
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128, // all calls go to one "host"; the default 2 would redial on every burst
		IdleConnTimeout:     90 * time.Second,
	}
	for _, p := range []struct {
		u    **url.URL
		path string
	}{{&c.chatURL, "/v1/chat/completions"}, {&c.completionsURL, "/v1/completions"}, {&c.modelsURL, "/v1/models"}} {
		u, err := url.Parse(baseURL + p.path)
		if err != nil {
			return nil, err
		}
		*p.u = u
	}
	c.hdrJSON = header("application/json", o.Token, true)
	c.hdrStream = header("text/event-stream", o.Token, true)
	c.hdrGet = header("application/json", o.Token, false)
	maxEvent := c.maxEvent
	c.readers.New = func() any { return sse.NewReader(nil, maxEvent) }
	return c, nil
}

// header builds the only headers a request carries. The empty User-Agent
// keeps net/http from adding its own.
func header(accept, token string, body bool) http.Header {
	h := http.Header{"Accept": {accept}, "User-Agent": {""}}
	if body {
		h["Content-Type"] = []string{"application/json"}
	}
	if token != "" {
		h["Authorization"] = []string{"Bearer " + token}
	}
	return h
}

// Close closes the idle connections to the proxy. Calls in flight are not
// affected, and the Client stays usable.
func (c *Client) Close() {
	c.tr.CloseIdleConnections()
}

// chatBody is a ChatRequest on the wire: embedding adds the stream fields
// in the same, single marshal.
type chatBody struct {
	ChatRequest
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
}

// completionBody is chatBody for legacy completions.
type completionBody struct {
	CompletionRequest
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

var includeUsage = &streamOptions{IncludeUsage: true}

// Chat sends r to /v1/chat/completions and returns the first choice's
// message. An answer without choices is a Result with empty Text.
func (c *Client) Chat(ctx context.Context, r ChatRequest) (Result, error) {
	body, err := json.Marshal(&chatBody{ChatRequest: r})
	if err != nil {
		return Result{}, fmt.Errorf("encode model request: %w", err)
	}
	var out unaryResponse
	if err := c.unary(ctx, c.request(ctx, http.MethodPost, c.chatURL, c.hdrJSON, body), &out); err != nil {
		return Result{}, err
	}
	res := Result{Model: out.Model, Usage: out.Usage}
	if len(out.Choices) > 0 {
		res.Text = out.Choices[0].Message.Content
		res.FinishReason = out.Choices[0].FinishReason
		res.ToolCalls = out.Choices[0].Message.ToolCalls
		if len(res.ToolCalls) > MaxToolCalls {
			return Result{}, &Error{Status: http.StatusBadGateway, Type: errTypeUpstream, Message: "the model made more than " + strconv.Itoa(MaxToolCalls) + " tool calls"}
		}
	}
	return res, nil
}

// Complete sends r to /v1/completions and returns the first choice's text.
// An answer without choices is a Result with empty Text.
func (c *Client) Complete(ctx context.Context, r CompletionRequest) (Result, error) {
	body, err := json.Marshal(&completionBody{CompletionRequest: r})
	if err != nil {
		return Result{}, fmt.Errorf("encode model request: %w", err)
	}
	var out unaryResponse
	if err := c.unary(ctx, c.request(ctx, http.MethodPost, c.completionsURL, c.hdrJSON, body), &out); err != nil {
		return Result{}, err
	}
	res := Result{Model: out.Model, Usage: out.Usage}
	if len(out.Choices) > 0 {
		res.Text = out.Choices[0].Text
		res.FinishReason = out.Choices[0].FinishReason
	}
	return res, nil
}

// ChatStream sends r to /v1/chat/completions as a stream with usage, calls
// onDelta (if not nil) with every non-empty content delta in order, and
// returns the whole text, the last finish reason and the usage. On error
// the Result holds what arrived before it.
func (c *Client) ChatStream(ctx context.Context, r ChatRequest, onDelta func(text string) error) (Result, error) {
	body, err := json.Marshal(&chatBody{ChatRequest: r, Stream: true, StreamOptions: includeUsage})
	if err != nil {
		return Result{}, fmt.Errorf("encode model request: %w", err)
	}
	return c.stream(ctx, c.chatURL, body, false, onDelta)
}

// CompleteStream is ChatStream for /v1/completions: the deltas are the
// choices' text.
func (c *Client) CompleteStream(ctx context.Context, r CompletionRequest, onDelta func(text string) error) (Result, error) {
	body, err := json.Marshal(&completionBody{CompletionRequest: r, Stream: true, StreamOptions: includeUsage})
	if err != nil {
		return Result{}, fmt.Errorf("encode model request: %w", err)
	}
	return c.stream(ctx, c.completionsURL, body, true, onDelta)
}

// Models returns the ids /v1/models lists, in its order.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	infos, err := c.ModelInfos(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(infos))
	for _, m := range infos {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// ModelInfo is one entry of /v1/models: its id and, where the backend
// says (Privatemode does), its tasks ("generate", "tool_calling", …).
type ModelInfo struct {
	ID    string
	Tasks []string
}

// ModelInfos returns the entries /v1/models lists, in its order.
func (c *Client) ModelInfos(ctx context.Context) ([]ModelInfo, error) {
	var out struct {
		Data []struct {
			ID    string   `json:"id"`
			Tasks []string `json:"tasks"`
		} `json:"data"`
	}
	if err := c.unary(ctx, c.request(ctx, http.MethodGet, c.modelsURL, c.hdrGet, nil), &out); err != nil {
		return nil, err
	}
	infos := make([]ModelInfo, 0, len(out.Data))
	for _, d := range out.Data {
		if d.ID != "" {
			infos = append(infos, ModelInfo{ID: d.ID, Tasks: d.Tasks})
		}
	}
	return infos, nil
}

// request builds a request without http.NewRequest's URL parse and header
// map: the URL and headers are shared, read-only.
func (c *Client) request(ctx context.Context, method string, u *url.URL, h http.Header, body []byte) *http.Request {
	r := &http.Request{
		Method: method, URL: u, Host: u.Host, Header: callHeader(ctx, h),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	if body != nil {
		br := &bodyReader{b: body}
		r.Body, r.GetBody, r.ContentLength = br, br.again, int64(len(body))
	}
	return r.WithContext(ctx)
}

// bodyReader is a request body over the marshalled bytes; again lets the
// transport replay it on a kept-alive connection the proxy had closed.
type bodyReader struct {
	b   []byte
	off int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *bodyReader) Close() error { return nil }

func (r *bodyReader) again() (io.ReadCloser, error) { return &bodyReader{b: r.b}, nil }

// unaryResponse covers chat and legacy completion answers.
type unaryResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   string     `json:"content"`
			ToolCalls []ToolCall `json:"tool_calls"`
		} `json:"message"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage Usage `json:"usage"`
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// unary performs req and decodes a 2xx body into out.
func (c *Client) unary(ctx context.Context, req *http.Request, out any) error {
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return callError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.statusError(req, resp)
	}
	bp := bufPool.Get().(*[]byte)
	b, err := readBounded(resp.Body, c.maxResp, (*bp)[:0], resp.ContentLength)
	defer func() {
		if cap(b) <= maxPooledBuf {
			*bp = b[:0]
			bufPool.Put(bp)
		}
	}()
	if errors.Is(err, errTooLarge) {
		c.log.Warn("model answer too large", "path", req.URL.Path, "limit", c.maxResp)
		return &Error{Status: http.StatusBadGateway, Type: errTypeUpstream,
			Message: "the model's answer exceeds " + strconv.Itoa(c.maxResp) + " bytes"}
	}
	if err != nil {
		return callError(ctx, err)
	}
	// Unmarshal copies every string out of b, so b can go back to the pool.
	if err := json.Unmarshal(b, out); err != nil {
		c.log.Warn("model answer is not valid JSON", "path", req.URL.Path, "bytes", len(b))
		return &Error{Status: http.StatusBadGateway, Type: errTypeUpstream, Message: "the model's answer is not valid JSON"}
	}
	return nil
}

var errTooLarge = errors.New("body exceeds the size limit")

// readBounded appends r to b until EOF, failing with errTooLarge past limit
// bytes; hint is the Content-Length (-1 if unknown), used to size b once.
func readBounded(r io.Reader, limit int, b []byte, hint int64) ([]byte, error) {
	if hint > int64(limit) {
		return b, errTooLarge
	}
	if hint >= 0 && cap(b)-len(b) < int(hint)+1 { // +1: the read that sees EOF needs room
		b = append(make([]byte, 0, len(b)+int(hint)+1), b...)
	}
	for {
		if len(b) > limit {
			return b, errTooLarge
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):min(cap(b), limit+1)])
		b = b[:len(b)+n]
		if err == io.EOF {
			if len(b) > limit {
				return b, errTooLarge
			}
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

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
