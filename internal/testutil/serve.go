package testutil

import (
	"context"
	"net"
	"testing"
	"time"
)

// ServeLoopback listens on 127.0.0.1 port 0, runs serve on the listener in
// a goroutine and returns the address (host:port). When the test ends it
// calls shutdown (bounded by ten seconds) and fails the test if shutdown or
// serve returned an error. Cleanups registered after it run before it, so a
// client's idle connections can be closed first.
func ServeLoopback(t testing.TB, serve func(net.Listener) error, shutdown func(context.Context) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
