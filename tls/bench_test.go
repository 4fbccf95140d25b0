package tls

import (
	stdtls "crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// The cost TLS adds to a listener, measured against the same fasthttp
// server in plain HTTP in the same run:
//
//	go test -run '^$' -bench . -benchmem ./tls

// benchServer serves "ok" on loopback, through m's TLS when m is not nil.
func benchServer(b *testing.B, m *Manager) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, Logger: discardLogger{}}
	served := ln
	if m != nil {
		served = m.Listener(ln)
	}
	go func() { _ = srv.Serve(served) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func benchRequests(b *testing.B, url string, tc *stdtls.Config, keepAlive bool) {
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkRequest is one GET per iteration on a kept-alive connection:
// the steady-state cost of TLS on each request.
func BenchmarkRequest(b *testing.B) {
	m, _ := startManager(b, Options{Source: SourceLocalCA, Names: []string{"localhost"}})
	tc := &stdtls.Config{RootCAs: poolOf(b, m.LocalCA().CertificatePEM())}
	b.Run("plain", func(b *testing.B) { benchRequests(b, "http://localhost:"+benchServer(b, nil)+"/", nil, true) })
	b.Run("tls", func(b *testing.B) { benchRequests(b, "https://localhost:"+benchServer(b, m)+"/", tc, true) })
}

// BenchmarkNewConnection is one GET on a new connection per iteration:
// the full handshake (ECDSA P-256 leaf, X25519MLKEM768 key share) that a
// client without keep-alive pays each time.
func BenchmarkNewConnection(b *testing.B) {
	m, _ := startManager(b, Options{Source: SourceLocalCA, Names: []string{"localhost"}})
	pool := poolOf(b, m.LocalCA().CertificatePEM())
	tlsURL := "https://localhost:" + benchServer(b, m) + "/"
	b.Run("plain", func(b *testing.B) { benchRequests(b, "http://localhost:"+benchServer(b, nil)+"/", nil, false) })
	b.Run("tls-full", func(b *testing.B) { benchRequests(b, tlsURL, &stdtls.Config{RootCAs: pool}, false) })
	// A client that keeps session tickets (Go, curl, Ruby's OpenSSL with
	// a session cache) resumes instead of a full handshake.
	resumed := &stdtls.Config{RootCAs: pool, ClientSessionCache: stdtls.NewLRUClientSessionCache(8)}
	b.Run("tls-resumed", func(b *testing.B) { benchRequests(b, tlsURL, resumed, false) })
}
