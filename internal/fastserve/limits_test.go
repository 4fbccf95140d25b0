package fastserve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/valyala/fasthttp"
)

// start serves c on a loopback port until the test ends.
func start(t *testing.T, c Config) (*Server, string) {
	t.Helper()
	s := New(c)
	ln := listen(t)
	errc := serveAsync(s, ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-errc
	})
	return s, ln.Addr().String()
}

// readResponse reads one HTTP response from conn.
func readResponse(t *testing.T, conn net.Conn) *http.Response {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	return resp
}

// TestOversizedBodyAnswerIsReadable sends a body over the limit the way
// most clients do, the whole body first and then reading the answer: with
// a plain close the client's writes fail (broken pipe, reset) and it never
// reads the 413.
func TestOversizedBodyAnswerIsReadable(t *testing.T) {
	_, addr := start(t, Config{MaxRequestBody: 1 << 10, Handler: func(ctx *fasthttp.RequestCtx) {}})
	body := bytes.Repeat([]byte("a"), 40<<20)
	for i := range 5 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
		if _, err := conn.Write(body); err != nil {
			t.Fatalf("attempt %d: writing the body: %v", i, err)
		}
		resp := readResponse(t, conn)
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != fasthttp.StatusRequestEntityTooLarge || !strings.Contains(string(b), "larger than 1024 bytes") {
			t.Fatalf("attempt %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

// TestOversizedHeadersAnswerIsReadable is the same for a header block
// over the read buffer: the client is still writing headers when the
// server answers 431.
func TestOversizedHeadersAnswerIsReadable(t *testing.T) {
	_, addr := start(t, Config{ReadBufferSize: 4 << 10, Handler: func(ctx *fasthttp.RequestCtx) {}})
	for i := range 5 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 8<<20)); err != nil {
			t.Fatalf("attempt %d: writing the headers: %v", i, err)
		}
		resp := readResponse(t, conn)
		conn.Close()
		if resp.StatusCode != fasthttp.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("attempt %d: status %d", i, resp.StatusCode)
		}
	}
}

func TestInFlightCapAnswers503WithRetryAfter(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	_, addr := start(t, Config{MaxInFlight: 1, RetryAfter: 3 * time.Second, Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/stream" {
			done := Detach(ctx)
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				defer done()
				entered <- struct{}{}
				<-release
				_, _ = w.WriteString("streamed")
			})
			return
		}
		entered <- struct{}{}
		<-release
		ctx.SetBodyString("ok")
	}})
	for _, path := range []string{"/unary", "/stream"} {
		t.Run(path, func(t *testing.T) {
			release = make(chan struct{})
			first := make(chan string, 1)
			go func() {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					first <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				first <- string(b)
			}()
			<-entered
			resp, err := http.Get("http://" + addr + "/other")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != fasthttp.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" {
				t.Fatalf("over the cap: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			close(release)
			if got := <-first; got != "ok" && got != "streamed" {
				t.Fatalf("first request: %q", got)
			}
		})
	}
}

// TestNoMultipartTempFiles uploads a multipart body over fasthttp's 16 MiB
// in-memory bound: pre-parsing would write it to $TMPDIR in cleartext
// before the handler runs.
func TestNoMultipartTempFiles(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	seen := make(chan []string, 1)
	_, addr := start(t, Config{MaxRequestBody: 40 << 20, Handler: func(ctx *fasthttp.RequestCtx) {
		entries, _ := os.ReadDir(tmp)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		seen <- names
		ctx.SetBodyString(fmt.Sprint(len(ctx.PostBody())))
	}})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "prompt.wav")
	_, _ = fw.Write(bytes.Repeat([]byte("secret audio "), (17<<20)/13))
	_ = mw.Close()
	resp, err := http.Post("http://"+addr+"/v1/audio/transcriptions", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if names := <-seen; len(names) != 0 {
		t.Fatalf("files in TMPDIR during the upload: %v", names)
	}
}

// TestLogsCarryNoRequestBytes sends malformed requests carrying a token
// and checks the debug log names the failure without quoting them.
func TestLogsCarryNoRequestBytes(t *testing.T) {
	var logs testutil.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, addr := start(t, Config{Logger: log, MaxRequestBody: 64, Handler: func(ctx *fasthttp.RequestCtx) {}})
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET-TOKEN\r\nbroken header line SECRET-TOKEN\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET-TOKEN\r\nContent-Length: 100\r\n\r\nSECRET-PROMPT",
		"SECRET-TOKEN / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /SECRET-TOKEN HTTP/1.1\r\nHost: x\r\nContent-Length: nope-SECRET-TOKEN\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, raw)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b []byte
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			b, _ = io.ReadAll(resp.Body)
		}
		conn.Close()
		if strings.Contains(string(b), "SECRET") {
			t.Errorf("the answer quotes the request: %q", b)
		}
	}
	if strings.Contains(logs.String(), "SECRET") {
		t.Fatalf("the log quotes request bytes:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "request refused before the handler") {
		t.Fatalf("the failures were not logged:\n%s", logs.String())
	}
}

// TestWatchClientCancelsWhenTheClientLeaves: a handler waiting on the
// watched context learns that the client closed its connection, and a
// connection whose client stays can serve another request afterwards.
func TestWatchClientCancelsWhenTheClientLeaves(t *testing.T) {
	causes := make(chan error, 1)
	_, addr := start(t, Config{Handler: func(ctx *fasthttp.RequestCtx) {
		wctx, stop := WatchClient(ctx, context.Background())
		defer stop()
		if string(ctx.Path()) == "/quick" {
			ctx.SetBodyString("quick")
			return
		}
		select {
		case <-wctx.Done():
			causes <- context.Cause(wctx)
		case <-time.After(30 * time.Second):
			causes <- errors.New("not cancelled within 30s")
		}
	}})

	// Keep-alive: the watch must leave the connection usable.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i := range 2 {
		_, _ = io.WriteString(conn, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on one connection: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "quick" {
			t.Fatalf("request %d: %q", i, b)
		}
	}
	// Now wait in the handler and leave.
	_, _ = io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	if err := <-causes; !errors.Is(err, ErrClientGone) {
		t.Fatalf("cause %v, want ErrClientGone", err)
	}
}

// TestConnectionCapAnswersReadably: connections beyond the cap are
// refused before any byte is read, with a 503 and Retry-After the client
// reads after writing its whole (large) request.
func TestConnectionCapAnswersReadably(t *testing.T) {
	_, addr := start(t, Config{MaxInFlight: 1, RetryAfter: 2 * time.Second, MaxRequestBody: 32 << 20,
		Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range MaxConnsPerInFlight {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp := readResponse(t, c); resp.StatusCode != 200 {
			t.Fatalf("connection within the cap: %d", resp.StatusCode)
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := bytes.Repeat([]byte("a"), 16<<20)
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := c.Write(body); err != nil {
		t.Fatalf("writing the body to a refused connection: %v", err)
	}
	resp := readResponse(t, c)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("over the connection cap: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Closing one held connection frees its place (once the server has
	// seen the close).
	held[0].Close()
	held = held[1:]
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp := readResponse(t, c2)
		c2.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection's place was not freed: %d", resp.StatusCode)
		}
	}
}
