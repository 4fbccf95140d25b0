package sandbox

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// BenchmarkSandboxChat measures the sandbox's cost per chat request,
// in-process over loopback TCP: plaintext mode (the baseline) vs
// encrypted mode (a fixed secret; the request is encrypted once and
// replayed, so the numbers are the server's decrypt + model + encrypt),
// unary and streamed (64 tokens, one SSE chunk each). Allocations include
// the net/http client's.
func BenchmarkSandboxChat(b *testing.B) {
	fixed := envelope.Secret{ID: "k5u9bRVtHkXuHrdfK3cvSB3Xl5UpJ+8Q3bAhy7B/vvs=", Key: [32]byte{0x42}}
	for _, mode := range []string{"plaintext", "encrypted"} {
		for _, stream := range []bool{false, true} {
			name := mode + "/unary"
			extra := `,"max_tokens":64`
			if stream {
				name, extra = mode+"/stream", extra+`,"stream":true`
			}
			b.Run(name, func(b *testing.B) {
				o := Options{Logger: slog.New(slog.DiscardHandler), RecordSize: -1}
				if mode == "plaintext" {
					o.Plaintext = true
				} else {
					o.FixedSecret = &fixed
				}
				s, err := New(o)
				if err != nil {
					b.Fatal(err)
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				go func() { _ = s.Serve(ln) }()
				defer func() { _ = s.Shutdown(context.Background()) }()
				body := []byte(chatBody("benchmark the sandbox backend please", extra))
				if mode == "encrypted" {
					sess, _ := envelope.NewSession(fixed)
					if body, err = sess.EncryptJSON(body, envelope.ChatRequestPlain); err != nil {
						b.Fatal(err)
					}
				}
				tr := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
				defer tr.CloseIdleConnections()
				url := "http://" + ln.Addr().String() + pathChat
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, 0, 64<<10)
					for pb.Next() {
						req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
						req.Header.Set(headerSecretID, fixed.ID)
						resp, err := tr.RoundTrip(req)
						if err != nil || resp.StatusCode != 200 {
							b.Fatalf("%v %v", err, resp)
						}
						w := bytes.NewBuffer(buf[:0])
						_, err = w.ReadFrom(resp.Body)
						_ = resp.Body.Close()
						if err != nil || stream && !bytes.HasSuffix(w.Bytes(), []byte("data: [DONE]\n\n")) {
							b.Fatalf("stream incomplete: %v", err)
						}
					}
				})
			})
		}
	}
}
