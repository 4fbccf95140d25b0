package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
)

// TestCallerGoneCancelsModelCall: when GitLab (an IDE behind it) closes
// the connection while a code completion waits for the model, the model
// call is cancelled, unary and streamed.
func TestCallerGoneCancelsModelCall(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			entered := make(chan struct{}, 1)
			causes := make(chan error, 1)
			h.model.Hold = func(ctx context.Context) error {
				entered <- struct{}{}
				select {
				case <-ctx.Done():
					causes <- context.Cause(ctx)
					return ctx.Err()
				case <-time.After(30 * time.Second):
					causes <- errors.New("the model call was not cancelled within 30s")
					return nil
				}
			}
			hdr := h.headers(gitlabtest.TokenOptions{})
			hdr.Set("Content-Type", "application/json")
			body := railsCompletionBody("def hello\n", "", map[string]any{"stream": stream})
			c, err := net.Dial("tcp", h.addr())
			if err != nil {
				t.Fatal(err)
			}
			var req bytes.Buffer
			fmt.Fprintf(&req, "POST /v2/code/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", len(body))
			_ = hdr.Write(&req)
			req.WriteString("\r\n" + body)
			if _, err := c.Write(req.Bytes()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-entered:
			case <-time.After(30 * time.Second):
				t.Fatal("the model was not called")
			}
			c.Close()
			if err := <-causes; !errors.Is(err, fastserve.ErrClientGone) {
				t.Fatalf("model call context: %v, want ErrClientGone", err)
			}
		})
	}
}
