package fastserve

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkWatchClient measures what watching the client's connection
// adds to one keep-alive request over loopback: a goroutine parked in the
// runtime's poller and two deadline changes. Baseline: the same request
// without the watch, in the same run.
//
//	go test -run '^$' -bench WatchClient -benchmem ./internal/fastserve/
func BenchmarkWatchClient(b *testing.B) {
	for _, watch := range []bool{false, true} {
		name := "baseline"
		if watch {
			name = "watched"
		}
		b.Run(name, func(b *testing.B) {
			s := New(Config{Handler: func(ctx *fasthttp.RequestCtx) {
				if watch {
					_, stop := WatchClient(ctx, context.Background())
					defer stop()
				}
				ctx.SetBodyString("ok")
			}})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = s.Serve(ln) }()
			defer func() { _ = s.Shutdown(context.Background()) }()
			c := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 1}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI("http://" + ln.Addr().String() + "/")
			b.ResetTimer()
			for range b.N {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("%v %d", err, resp.StatusCode())
				}
			}
		})
	}
}
