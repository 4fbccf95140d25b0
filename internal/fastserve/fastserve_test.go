package fastserve

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func newServer() *Server {
	return New(Config{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }})
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveAsync runs Serve and returns its result channel.
func serveAsync(s *Server, ln net.Listener) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	return errc
}

// wait fails the test if Serve has not returned; the bound only turns a
// deadlock into a readable failure.
func wait(t *testing.T, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return after Shutdown")
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	s := newServer()
	ln := listen(t)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wait(t, serveAsync(s, ln))
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts connections after Shutdown")
	}
}

// TestShutdownRacingServe repeats the start-then-stop pattern of tests and
// early SIGTERMs; with plain fasthttp some iterations hang.
func TestShutdownRacingServe(t *testing.T) {
	for range 200 {
		s := newServer()
		errc := serveAsync(s, listen(t))
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		wait(t, errc)
	}
}

func TestServeThenShutdown(t *testing.T) {
	s := newServer()
	ln := listen(t)
	errc := serveAsync(s, ln)
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, errc)
}
