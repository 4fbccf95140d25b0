package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/sse"
)

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
			return res, c.afterDone(rd, watchdog, u, &res)
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

// afterDone checks the end of a stream at [DONE]: a finish reason must
// have arrived (the proxy only relays it from an encrypted event), and
// nothing may follow [DONE]. It reads to the end of the body so the
// connection is reused.
func (c *Client) afterDone(rd *sse.Reader, watchdog *time.Timer, u *url.URL, res *Result) error {
	fail := func(msg string) error {
		c.log.Warn("model stream failed", "path", u.Path, "reason", msg)
		return &Error{Status: http.StatusBadGateway, Type: errTypeUpstream, Message: msg}
	}
	if res.FinishReason == "" {
		return fail("stream ended without a finish reason")
	}
	watchdog.Reset(doneDrainTimeout)
	if _, err := rd.Next(); err == nil {
		return fail("the model stream sent events after [DONE]")
	}
	return nil // the end, or a slow close: the answer is complete
}

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
