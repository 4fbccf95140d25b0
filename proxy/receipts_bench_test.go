package proxy_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// benchSink adapts a receipt log to the proxy like the appliance does.
type benchSink struct{ l *receipts.Log }

func (s benchSink) Admit() error { return s.l.Admit() }
func (s benchSink) Receipt(r proxy.RequestRecord) {
	rc := receipts.Receipt{Time: r.Start.UTC().Truncate(time.Millisecond), Route: r.Route, Feature: r.Feature, Instance: r.Instance,
		UserHash: receipts.HashUser(s.l.UserKey(), r.Instance, r.User), Model: r.Model, Status: r.Status, Outcome: r.Outcome,
		InTokens: r.InTokens, OutTokens: r.OutTokens, Millis: r.Duration.Milliseconds(),
		RequestSHA256: receipts.Digest(r.RequestSHA256), SecretID: r.SecretID}
	if l, ok := s.l.TrustAt(r.Sent); ok {
		rc.Trust = &l
	}
	if r.Received {
		rc.ResponseSHA256 = receipts.Digest(r.ResponseSHA256)
	}
	s.l.Record(rc)
}

// benchConcurrency is the number of requests in flight.
const benchConcurrency = 32

// BenchmarkProxyReceipts compares the proxy with receipts off and on in
// the same run: unary ~4 KB chat requests through the proxy's handler, 32
// in flight, against the in-process sandbox. The two proxies (same
// sandbox) take turns in rounds of 32×16 requests, so load from other
// processes hits both alike. Receipts go to a real log in a temporary
// directory (fsync at checkpoints). Requests carry the gateway's receipt
// headers (feature, GitLab instance, user), so receipts are as large as the
// gateway's. Reported: requests/s and median latency of each, their ratio
// and difference, and receipt bytes per request.
func BenchmarkProxyReceipts(b *testing.B) {
	up := startBenchSandbox(b)
	dir := b.TempDir()
	log, err := receipts.Open(receipts.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	log.SetTrust(receipts.TrustLink{Seq: 1, Hash: receipts.TrustHash("4b39a8936b177a0eafead393a85ecb5c027b2fd5aa0c1a2cd61a13e6923d69a7")}, time.Now().Add(-time.Hour))
	servers := make([]*proxy.Server, 2)
	for i := range servers {
		o := proxy.Options{Upstream: up, AllowInsecureUpstream: true, APIKey: "bench", Secrets: fixedSecrets{}}
		if i == 1 {
			o.Receipts = benchSink{log}
		}
		if servers[i], err = proxy.New(o); err != nil {
			b.Fatal(err)
		}
	}
	body := benchChatBody(32, false, "")
	var lat [2][]time.Duration
	var busy [2]time.Duration
	round := func(s *proxy.Server, n int) ([]time.Duration, time.Duration) {
		var next atomic.Int64
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		start := time.Now()
		for range benchConcurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ctx fasthttp.RequestCtx
				ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
				var mine []time.Duration
				for next.Add(1) <= int64(n) {
					ctx.Request.Reset()
					ctx.Response.Reset()
					ctx.Request.Header.SetMethod(fasthttp.MethodPost)
					ctx.Request.SetRequestURI("/v1/chat/completions")
					ctx.Request.Header.SetContentType("application/json")
					ctx.Request.Header.Set(receipts.HeaderFeature, "code_completions")
					ctx.Request.Header.Set(receipts.HeaderInstance, "4529e84e-8d53-4662-a06b-5c2e44eac247")
					ctx.Request.Header.Set(receipts.HeaderUser, "12345")
					ctx.Request.SetBody(body)
					t := time.Now()
					s.Handle(&ctx)
					mine = append(mine, time.Since(t))
					if ctx.Response.StatusCode() != 200 {
						b.Errorf("HTTP %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
						return
					}
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all, time.Since(start)
	}
	round(servers[0], benchConcurrency) // warm both up: connections, buffers
	round(servers[1], benchConcurrency)
	b.ReportAllocs()
	b.ResetTimer()
	per := benchConcurrency * 16
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither always follows the other.
		for _, k := range [][2]int{{0, 1}, {1, 0}}[i%2] {
			l, d := round(servers[k], per)
			lat[k] = append(lat[k], l...)
			busy[k] += d
		}
	}
	b.StopTimer()
	written := log.Stats().Written
	if err := log.Close(); err != nil {
		b.Fatal(err)
	}
	st := log.Stats()
	if st.Failures != 0 || written < uint64(len(lat[1])) {
		b.Fatalf("%d receipts written for %d requests, %d failures", written, len(lat[1]), st.Failures)
	}
	var size int64
	files, _ := filepath.Glob(filepath.Join(dir, "receipts-*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			size += fi.Size()
		}
	}
	rps := [2]float64{}
	p50 := [2]time.Duration{}
	for k := range 2 {
		rps[k] = float64(len(lat[k])) / busy[k].Seconds()
		slices.Sort(lat[k])
		p50[k] = lat[k][len(lat[k])/2]
	}
	b.ReportMetric(rps[0], "off-req/s")
	b.ReportMetric(rps[1], "on-req/s")
	b.ReportMetric(100*rps[1]/rps[0], "on/off-%")
	b.ReportMetric(float64(p50[0].Microseconds()), "off-p50-µs")
	b.ReportMetric(float64(p50[1].Microseconds()), "on-p50-µs")
	b.ReportMetric(float64(size)/float64(st.Written), "receipt-B/req")
}

// BenchmarkProxyReceiptsLatency measures what receipts add to one request's
// latency with nothing else in flight: requests alternate between the
// proxy without and with receipts (same sandbox), and the medians are
// compared. At concurrency 32 the median is mostly queueing, so this is
// where the added time is visible.
func BenchmarkProxyReceiptsLatency(b *testing.B) {
	up := startBenchSandbox(b)
	log, err := receipts.Open(receipts.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	log.SetTrust(receipts.TrustLink{Seq: 1, Hash: receipts.TrustHash("4b39a8936b177a0eafead393a85ecb5c027b2fd5aa0c1a2cd61a13e6923d69a7")}, time.Now().Add(-time.Hour))
	servers := make([]*proxy.Server, 2)
	for i := range servers {
		o := proxy.Options{Upstream: up, AllowInsecureUpstream: true, APIKey: "bench", Secrets: fixedSecrets{}}
		if i == 1 {
			o.Receipts = benchSink{log}
		}
		if servers[i], err = proxy.New(o); err != nil {
			b.Fatal(err)
		}
	}
	body := benchChatBody(32, false, "")
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	var lat [2][]time.Duration
	one := func(k int) {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod(fasthttp.MethodPost)
		ctx.Request.SetRequestURI("/v1/chat/completions")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.Header.Set(receipts.HeaderFeature, "code_completions")
		ctx.Request.Header.Set(receipts.HeaderInstance, "4529e84e-8d53-4662-a06b-5c2e44eac247")
		ctx.Request.Header.Set(receipts.HeaderUser, "12345")
		ctx.Request.SetBody(body)
		t := time.Now()
		servers[k].Handle(&ctx)
		lat[k] = append(lat[k], time.Since(t))
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("HTTP %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	for range 50 {
		one(0)
		one(1)
	}
	lat = [2][]time.Duration{}
	for i := 0; b.Loop(); i++ {
		one(i % 2)
		one(1 - i%2)
	}
	p50 := [2]time.Duration{}
	for k := range 2 {
		slices.Sort(lat[k])
		p50[k] = lat[k][len(lat[k])/2]
	}
	b.ReportMetric(float64(p50[0].Microseconds()), "off-p50-µs")
	b.ReportMetric(float64(p50[1].Microseconds()), "on-p50-µs")
	b.ReportMetric(float64((p50[1] - p50[0]).Microseconds()), "added-p50-µs")
}
