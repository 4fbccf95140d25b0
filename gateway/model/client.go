package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
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
