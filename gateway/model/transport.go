package model

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

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
