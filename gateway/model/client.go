package model

import (
	"bytes"
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
	"sync/atomic"
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
	doneDrainEvents  = 4

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
		Method: method, URL: u, Host: u.Host, Header: h,
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

// stream performs a streaming request and relays its deltas.
func (c *Client) stream(parent context.Context, u *url.URL, body []byte, legacy bool, onDelta func(string) error) (Result, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// The watchdog cancels the request when nothing arrives for c.idle; the
	// blocked read then fails and stalled says why. It runs from before the
	// response headers, so a proxy that never answers is caught too.
	var stalled atomic.Bool
	watchdog := time.AfterFunc(c.idle, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()

	req := c.request(ctx, http.MethodPost, u, c.hdrStream, body)
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		if parent.Err() == nil && stalled.Load() {
			return Result{}, c.stallError(u)
		}
		return Result{}, callError(parent, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := c.statusError(req, resp)
		if parent.Err() == nil && stalled.Load() {
			return Result{}, c.stallError(u)
		}
		return Result{}, e
	}

	rd := c.readers.Get().(*sse.Reader)
	rd.Reset(resp.Body)
	defer func() { rd.Reset(nil); c.readers.Put(rd) }()

	var (
		res  Result
		text strings.Builder
		ch   chunk
	)
	for {
		ev, err := rd.Next()
		if err != nil {
			res.Text = text.String()
			return res, c.streamReadError(parent, u, &stalled, err)
		}
		watchdog.Reset(c.idle)
		if bytes.Equal(ev.Data, doneData) {
			res.Text = text.String()
			// Read to the end of the body so the connection is reused; what
			// follows [DONE] (nothing, from a well-behaved proxy) is ignored.
			watchdog.Reset(doneDrainTimeout)
			for range doneDrainEvents {
				if _, err := rd.Next(); err != nil {
					break
				}
			}
			return res, nil
		}
		delta, err := applyChunk(ev.Data, legacy, &ch, &res)
		if err != nil {
			res.Text = text.String()
			if e, ok := err.(*Error); ok {
				c.log.Warn("model stream failed", "path", u.Path, "status", e.Status, "type", e.Type)
			}
			return res, err
		}
		if delta == "" {
			continue
		}
		text.WriteString(delta)
		if onDelta != nil {
			if err := onDelta(delta); err != nil {
				// Closing the body drops the connection, which makes the
				// proxy cancel its upstream request: no tokens are generated
				// for nobody.
				cancel()
				resp.Body.Close()
				res.Text = text.String()
				return res, fmt.Errorf("model stream stopped by the receiver: %w", err)
			}
		}
	}
}

var doneData = []byte("[DONE]")

func (c *Client) stallError(u *url.URL) *Error {
	c.log.Warn("model stream stalled", "path", u.Path, "idle", c.idle)
	return &Error{Status: http.StatusGatewayTimeout, Type: errTypeUpstream, Message: "the model stopped sending"}
}

// streamReadError explains why reading a stream failed before [DONE].
func (c *Client) streamReadError(parent context.Context, u *url.URL, stalled *atomic.Bool, err error) error {
	if parent.Err() != nil {
		return callError(parent, err)
	}
	if stalled.Load() {
		return c.stallError(u)
	}
	e := &Error{Status: http.StatusBadGateway, Type: errTypeUpstream}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, sse.ErrTruncated), errors.Is(err, io.ErrUnexpectedEOF):
		e.Message = "stream ended before it was complete"
	case errors.Is(err, sse.ErrEventTooLarge):
		e.Message = "an event of the model stream exceeds " + strconv.Itoa(c.maxEvent) + " bytes"
	default:
		e.Message = "the model stream broke off"
	}
	c.log.Warn("model stream failed", "path", u.Path, "reason", e.Message, "error", err)
	return e
}

// chunk is one data event of a chat or legacy completion stream. It is
// reused across the events of a stream.
type chunk struct {
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage"`
	Error   *errorDetail  `json:"error"`
}

type chunkChoice struct {
	Index int `json:"index"`
	Delta struct {
		Content   string          `json:"content"`
		ToolCalls []toolCallDelta `json:"tool_calls"`
	} `json:"delta"`
	Text         string `json:"text"`
	FinishReason string `json:"finish_reason"`
}

// applyChunk decodes the data of one stream event into ch, folds its model,
// finish reason and usage into res, and returns the text delta of choice 0.
// An error event yields a 502 *Error carrying its message.
func applyChunk(data []byte, legacy bool, ch *chunk, res *Result) (string, error) {
	// encoding/json decodes into existing slice elements without zeroing
	// them, so the reused choices are cleared first.
	clear(ch.Choices[:cap(ch.Choices)])
	*ch = chunk{Choices: ch.Choices[:0]}
	if err := json.Unmarshal(data, ch); err != nil {
		return "", &Error{Status: http.StatusBadGateway, Type: errTypeUpstream, Message: "the model stream sent a malformed event"}
	}
	if ch.Error != nil {
		e := &Error{Status: http.StatusBadGateway, Type: ch.Error.Type, Message: ch.Error.Message}
		if e.Type == "" {
			e.Type = errTypeUpstream
		}
		if e.Message == "" {
			e.Message = "the model stream failed"
		}
		return "", e
	}
	if ch.Model != "" {
		res.Model = ch.Model
	}
	if ch.Usage != nil {
		res.Usage = *ch.Usage
	}
	for i := range ch.Choices {
		cc := &ch.Choices[i]
		if cc.Index != 0 {
			continue // only n=1 is requested; other choices would interleave
		}
		if cc.FinishReason != "" {
			res.FinishReason = cc.FinishReason
		}
		if legacy {
			return cc.Text, nil
		}
		if err := applyToolCalls(cc.Delta.ToolCalls, res); err != nil {
			return "", err
		}
		return cc.Delta.Content, nil
	}
	return "", nil
}

// toolCallDelta is one streamed piece of a tool call: the first piece of an
// index carries id and name, later ones append to the arguments.
type toolCallDelta struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// maxToolArgumentBytes bounds the JSON arguments of one tool call.
const maxToolArgumentBytes = 1 << 20

// applyToolCalls folds tool-call deltas into res.ToolCalls by index.
func applyToolCalls(deltas []toolCallDelta, res *Result) error {
	for _, d := range deltas {
		if d.Index < 0 || d.Index >= MaxToolCalls {
			return &Error{Status: http.StatusBadGateway, Type: errTypeUpstream, Message: "the model stream sent a tool call index out of range"}
		}
		for len(res.ToolCalls) <= d.Index {
			res.ToolCalls = append(res.ToolCalls, ToolCall{Type: "function"})
		}
		tc := &res.ToolCalls[d.Index]
		if d.ID != "" {
			tc.ID = d.ID
		}
		if d.Type != "" {
			tc.Type = d.Type
		}
		if tc.Function.Name == "" {
			tc.Function.Name = d.Function.Name
		}
		if len(tc.Function.Arguments)+len(d.Function.Arguments) > maxToolArgumentBytes {
			return &Error{Status: http.StatusBadGateway, Type: errTypeUpstream, Message: "the model's tool call arguments exceed " + strconv.Itoa(maxToolArgumentBytes) + " bytes"}
		}
		tc.Function.Arguments += d.Function.Arguments
	}
	return nil
}
