package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// benchSink adapts a receipt log to the proxy like the appliance does.
type benchSink struct{ l *receipts.Log }

func (s benchSink) Admit() error { return s.l.Admit() }
func (s benchSink) Receipt(r proxy.RequestRecord) {
	rc := receipts.Receipt{Time: r.Start.UTC().Truncate(time.Millisecond), Route: r.Route, Feature: r.Feature, Instance: r.Instance,
		UserHash: s.l.HashUser(r.Instance, r.User), Model: r.Model, Status: r.Status, Outcome: r.Outcome,
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
// in flight, against the in-process sandbox. Each b.N iteration is one
// pair of rounds of 32×16 requests, off and on back to back (which goes
// first alternates: ABBAAB…), so load from other processes hits both
// alike; after every round the process pauses 25ms (not in the wall time,
// but in the CPU time) while the receipt writer catches up, so no round
// pays for the other's writing. Receipts go to a real log in a
// temporary directory (default options). Requests carry the gateway's
// receipt headers (feature, GitLab instance, user), so receipts are as
// large as the gateway's.
//
// Reported: the on/off throughput ratio of every pair (median, quartiles,
// min and max), the totals' ratio and requests/s; the same ratio from the
// process's CPU time per request (cpu-…: what throughput is when the CPU
// is the limit, and much less disturbed by other processes than wall
// time); median latency of each, receipt bytes per request, and the
// 1-minute load average before and after (other processes on the machine).
func BenchmarkProxyReceipts(b *testing.B) {
	up := startBenchSandbox(b)
	dir := b.TempDir()
	var log *receipts.Log
	var err error
	pprof.Do(context.Background(), pprof.Labels("side", "writer"), func(context.Context) {
		log, err = receipts.Open(receipts.Options{Dir: dir})
	})
	if err != nil {
		b.Fatal(err)
	}
	log.SetTrust(receipts.TrustLink{Seq: 1, Hash: receipts.TrustHash("4b39a8936b177a0eafead393a85ecb5c027b2fd5aa0c1a2cd61a13e6923d69a7")}, time.Now().Add(-time.Hour))
	// DUO_BENCH_RECEIPTS_AA=1 runs the rig against itself: both proxies
	// without receipts, so the ratios show the rig's own bias and noise.
	aa := os.Getenv("DUO_BENCH_RECEIPTS_AA") != ""
	servers := make([]*proxy.Server, 2)
	for i := range servers {
		o := proxy.Options{Upstream: up, AllowInsecureUpstream: true, APIKey: "bench", Secrets: fixedSecrets{}}
		if i == 1 && !aa {
			o.Receipts = benchSink{log}
		}
		if servers[i], err = proxy.New(o); err != nil {
			b.Fatal(err)
		}
	}
	body := benchChatBody(32, false, "")
	var lat [2][]time.Duration
	var busy, cpu [2]time.Duration
	var recorded uint64
	// settle is the pause after every round, its CPU time counted.
	const settle = 25 * time.Millisecond
	// caughtUp waits (bounded) until the writer has written every receipt
	// of the rounds so far.
	caughtUp := func() {
		for deadline := time.Now().Add(5 * time.Second); log.Stats().Written < recorded && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	// round sends n requests to proxy k and returns its requests/s, the
	// process's CPU time per request (the receipt writer's included) and
	// the latencies.
	round := func(k, n int) (float64, time.Duration, []time.Duration) {
		s := servers[k]
		cpu0 := processCPU()
		var next atomic.Int64
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		start := time.Now()
		for range benchConcurrency {
			wg.Go(func() {
				pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", []string{"off", "on"}[k])))
				var ctx fasthttp.RequestCtx
				ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
				mine := make([]time.Duration, 0, n/benchConcurrency+1)
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
			})
		}
		wg.Wait()
		d := time.Since(start)
		busy[k] += d
		if k == 1 && !aa {
			recorded += uint64(len(all))
		}
		// Both sides then idle equally long (the writer catching up
		// inside that time), so background work that runs when the
		// process idles (the GC's idle mark workers) falls on both alike.
		settled := time.Now().Add(settle)
		caughtUp()
		time.Sleep(time.Until(settled))
		c := processCPU() - cpu0
		cpu[k] += c
		return float64(len(all)) / d.Seconds(), c / time.Duration(max(1, len(all))), all
	}
	round(0, 4*benchConcurrency) // warm both up: connections, buffers
	round(1, 4*benchConcurrency)
	busy, cpu = [2]time.Duration{}, [2]time.Duration{}
	load := [2]float64{loadAverage()}
	var ratios, cpuRatios []float64
	b.ReportAllocs()
	b.ResetTimer()
	per := benchConcurrency * 16
	for i := 0; b.Loop(); i++ {
		var rps [2]float64
		var perReq [2]time.Duration
		for _, k := range [][2]int{{0, 1}, {1, 0}}[i%2] {
			var l []time.Duration
			rps[k], perReq[k], l = round(k, per)
			lat[k] = append(lat[k], l...)
		}
		ratios = append(ratios, 100*rps[1]/rps[0])
		cpuRatios = append(cpuRatios, 100*float64(perReq[0])/float64(perReq[1]))
	}
	b.StopTimer()
	load[1] = loadAverage()
	written := log.Stats().Written
	if err := log.Close(); err != nil {
		b.Fatal(err)
	}
	st := log.Stats()
	if st.Failures != 0 || (written < uint64(len(lat[1])) && !aa) {
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
	slices.Sort(ratios)
	slices.Sort(cpuRatios)
	q := func(r []float64, f float64) float64 { return r[int(f*float64(len(r)-1)+0.5)] }
	b.ReportMetric(float64(len(ratios)), "pairs")
	b.ReportMetric(q(ratios, 0.5), "on/off-%-median")
	b.ReportMetric(q(ratios, 0.25), "on/off-%-p25")
	b.ReportMetric(q(ratios, 0.75), "on/off-%-p75")
	b.ReportMetric(ratios[0], "on/off-%-min")
	b.ReportMetric(ratios[len(ratios)-1], "on/off-%-max")
	b.ReportMetric(100*rps[1]/rps[0], "on/off-%-total")
	// Throughput when the CPU is the limit, from CPU time per request:
	// other processes' load changes wall time far more than CPU time.
	b.ReportMetric(q(cpuRatios, 0.5), "cpu-on/off-%-median")
	b.ReportMetric(q(cpuRatios, 0.25), "cpu-on/off-%-p25")
	b.ReportMetric(q(cpuRatios, 0.75), "cpu-on/off-%-p75")
	b.ReportMetric(100*float64(cpu[0])/float64(cpu[1])*float64(len(lat[1]))/float64(len(lat[0])), "cpu-on/off-%-total")
	b.ReportMetric(float64(cpu[0].Microseconds())/float64(len(lat[0])), "off-cpu-µs/req")
	b.ReportMetric(float64(cpu[1].Microseconds())/float64(len(lat[1])), "on-cpu-µs/req")
	b.ReportMetric(rps[0], "off-req/s")
	b.ReportMetric(rps[1], "on-req/s")
	b.ReportMetric(float64(p50[0].Microseconds()), "off-p50-µs")
	b.ReportMetric(float64(p50[1].Microseconds()), "on-p50-µs")
	if !aa {
		b.ReportMetric(float64(size)/float64(st.Written), "receipt-B/req")
	}
	b.ReportMetric(load[0], "load1-before")
	b.ReportMetric(load[1], "load1-after")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage is the machine's 1-minute load average (Linux), or -1.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
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

// BenchmarkReceiptCost measures the CPU time receipts add to one request
// without the proxy and backend around it (so other processes' load barely
// matters): the SHA-256 of the encrypted request (BenchmarkProxyReceipts'
// ~4 KB chat body, encrypted) and of a 1 KB answer, the record handed to a
// real receipt log as the appliance does (keyed user hash, trust link,
// queue), and the log's writer (encoding, chain hash, batched writes), in
// process CPU time per request.
func BenchmarkReceiptCost(b *testing.B) {
	log, err := receipts.Open(receipts.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	log.SetTrust(receipts.TrustLink{Seq: 1, Hash: receipts.TrustHash("4b39a8936b177a0eafead393a85ecb5c027b2fd5aa0c1a2cd61a13e6923d69a7")}, time.Now().Add(-time.Hour))
	sess, err := envelope.NewSession(benchSecret)
	if err != nil {
		b.Fatal(err)
	}
	enc, err := sess.EncryptJSON(benchChatBody(32, false, ""), envelope.ChatRequestPlain)
	if err != nil {
		b.Fatal(err)
	}
	answer := bytes.Repeat([]byte{'a'}, 1024)
	sink := benchSink{log}
	var n uint64
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		start := time.Now()
		r := proxy.RequestRecord{Start: start, Sent: start, Route: "chat", Model: sandbox.ModelChat, Status: 200,
			InTokens: 900, OutTokens: 32, RequestSHA256: sha256.Sum256(enc), ResponseSHA256: sha256.Sum256(answer),
			Received: true, SecretID: benchSecret.ID, Feature: "code_completions", Instance: "4529e84e-8d53-4662-a06b-5c2e44eac247", User: "12345"}
		r.Duration = time.Since(start)
		sink.Receipt(r)
		n++
	}
	for deadline := time.Now().Add(10 * time.Second); log.Stats().Written < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	cpu := processCPU() - cpu0
	if st := log.Stats(); st.Written < n || st.Failures > 0 {
		b.Fatalf("%d of %d receipts written, %d failures", st.Written, n, st.Failures)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n)/1e3, "cpu-µs/req")
	b.ReportMetric(float64(len(enc)), "request-B")
}
