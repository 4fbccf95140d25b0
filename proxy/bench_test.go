package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	"github.com/valyala/fasthttp"
)

// benchSecret is shared by the proxy and the sandbox (no exchange).
var benchSecret = envelope.Secret{ID: "bench-fixed-secret", Key: [32]byte{0x42, 0x17}}

type fixedSecrets struct{}

func (fixedSecrets) Current() (envelope.Secret, error) { return benchSecret, nil }
func (fixedSecrets) Invalidate(context.Context, string) (envelope.Secret, error) {
	return benchSecret, errors.New("fixed secret")
}

// benchChatBody is a chat request of about 4 KB: a system prompt and a
// short conversation.
func benchChatBody(maxTokens int, stream bool, extra string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"model":"` + sandbox.ModelChat + `","messages":[`)
	b.WriteString(`{"role":"system","content":"You are a coding assistant. ` + strings.Repeat("Answer briefly and use Go. ", 20) + `"}`)
	for i := range 6 {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		fmt.Fprintf(&b, `,{"role":%q,"content":%q}`, role,
			strings.Repeat(fmt.Sprintf("Message %d about s.mu.RLock() and the map of items. ", i), 10))
	}
	fmt.Fprintf(&b, `],"temperature":0.2,"max_tokens":%d`, maxTokens)
	if stream {
		b.WriteString(`,"stream":true`)
	}
	b.WriteString(extra + "}")
	return b.Bytes()
}

// startBenchSandbox serves an encrypted sandbox with the fixed secret on
// loopback TCP.
func startBenchSandbox(b *testing.B) string {
	sb, err := sandbox.New(sandbox.Options{FixedSecret: &benchSecret, Logger: slog.New(slog.DiscardHandler), RecordSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = sb.Serve(ln) }()
	b.Cleanup(func() { _ = sb.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

// BenchmarkProxyChat measures one chat request on the proxy's in-process
// handler path (Server.Handle on a fasthttp.RequestCtx, no inbound socket)
// against an in-process encrypted sandbox over loopback TCP, with a fixed
// secret: unary with a ~4 KB body, and a stream of 64 chunks.
//
// The "proxy" cases count everything the process allocates for the
// request, the sandbox's work included; the "upstream-only" cases send a
// pre-encrypted body straight to the same sandbox with net/http (what the
// proxy's upstream leg costs without the proxy), so the difference between
// the two is the proxy's own cost: request parsing, cache_salt injection,
// field encryption, response or per-event decryption and the handler.
func BenchmarkProxyChat(b *testing.B) {
	for _, tc := range []struct {
		name   string
		stream bool
		tokens int
	}{{"unary-4KB", false, 32}, {"stream-64", true, 64}} {
		b.Run(tc.name+"/proxy", func(b *testing.B) {
			up := startBenchSandbox(b)
			s, err := proxy.New(proxy.Options{Upstream: up, AllowInsecureUpstream: true, APIKey: "bench", Secrets: fixedSecrets{}})
			if err != nil {
				b.Fatal(err)
			}
			body := benchChatBody(tc.tokens, tc.stream, "")
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			var out bytes.Buffer
			bw := bufio.NewWriterSize(&out, 64<<10)
			n := 0
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod(fasthttp.MethodPost)
				ctx.Request.SetRequestURI("/v1/chat/completions")
				ctx.Request.Header.SetContentType("application/json")
				ctx.Request.SetBody(body)
				s.Handle(&ctx)
				out.Reset()
				if err := ctx.Response.BodyWriteTo(bw); err != nil {
					b.Fatal(err)
				}
				_ = bw.Flush()
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("HTTP %d: %s", ctx.Response.StatusCode(), out.Bytes())
				}
				if tc.stream && !bytes.HasSuffix(out.Bytes(), []byte("data: [DONE]\n\n")) {
					b.Fatalf("stream incomplete: %.300s", out.Bytes())
				}
				n++
			}
			if tc.stream {
				b.ReportMetric(float64(n*(tc.tokens+2))/b.Elapsed().Seconds(), "chunks/s")
			}
		})
		b.Run(tc.name+"/upstream-only", func(b *testing.B) {
			up := startBenchSandbox(b)
			sess, err := envelope.NewSession(benchSecret)
			if err != nil {
				b.Fatal(err)
			}
			salt := `,"cache_salt":"` + strings.Repeat("s", 32) + `"`
			enc, err := sess.EncryptJSON(benchChatBody(tc.tokens, tc.stream, salt), envelope.ChatRequestPlain)
			if err != nil {
				b.Fatal(err)
			}
			tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
			defer tr.CloseIdleConnections()
			var out bytes.Buffer
			n := 0
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, up+"/v1/chat/completions", bytes.NewReader(enc))
				req.Header.Set("Privatemode-Secret-ID", benchSecret.ID)
				req.Header.Set("Content-Type", "application/json")
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				out.Reset()
				_, err = io.Copy(&out, resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("HTTP %d %v: %.300s", resp.StatusCode, err, out.Bytes())
				}
				n++
			}
			if tc.stream {
				b.ReportMetric(float64(n*(tc.tokens+2))/b.Elapsed().Seconds(), "chunks/s")
			}
		})
	}
}
