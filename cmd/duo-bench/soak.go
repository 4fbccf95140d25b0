package main

// The soak part (issue 8): bounded load against the appliance for a fixed
// duration while a child process's RSS, Go heap and goroutines are
// sampled; a least-squares slope per minute of each says whether anything
// grows.
//
// The child is this command re-executed as the soak child (soakChildEnv):
// the appliance as `serve --sandbox DIR` wires it — appliance.New and
// RunListeners with the sandbox's trust files loaded from DIR, plain HTTP,
// JSON logs at info level — plus a loopback stats endpoint with
// runtime/metrics. It is not the `serve` binary itself because `serve`
// deliberately exports no Go runtime metrics (ui/README.md), and goroutine
// counts are visible only from inside the process. The sandbox runs in
// this process, so the child holds the appliance alone.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// Environment of the soak child: the sandbox directory (its presence
// makes the process the child) and the state directory.
const (
	soakChildEnv = "DUO_BENCH_SOAK_CHILD"
	soakStateEnv = "DUO_BENCH_SOAK_STATE"
)

// Files of the sandbox directory, as `duo-confidential sandbox --out`
// writes them and `serve --sandbox` reads them.
const (
	soakEndpointFile   = "endpoint"
	soakRootsFile      = "test-roots.pem"
	soakManifestFile   = "manifest.json"
	soakCollateralFile = "collateral.json"
)

// Soak load shape: keep-alive unary clients and one client opening a new
// connection per request share the rate limit; stream clients run paced
// 20-token streams, every soakAbortEvery-th cancelled after its first
// event (a client going away mid-stream).
const (
	soakUnaryClients  = 4
	soakChurnClients  = 1
	soakStreamClients = 4
	soakStreamTokens  = 20
	soakTokensPerSec  = 200
	soakAbortEvery    = 4
)

// Growth limits, per minute (see docs/benchmarks.md, "Soak"): memory may
// not rise by more than 1% of its mean per minute, goroutines by more than
// one per minute; and a slope counts only if it is at least three standard
// errors above zero, so sampling noise in a short soak is not a trend.
const (
	soakMemLimitFrac      = 0.01
	soakGoroutineLimit    = 1.0
	soakSignificantStdErr = 3.0
	// soakIdleSlack is how many goroutines above the idle count before the
	// load still count as idle again afterwards: the proxy may keep one
	// upstream connection per client in its idle pool (two goroutines
	// each, until its idle timeout), plus the stats request's own. A leak
	// per request or per stream is thousands above it.
	soakIdleSlack = 2 + 2*(soakUnaryClients+soakChurnClients+soakStreamClients)
)

// SoakSample is one reading of the soak child.
type SoakSample struct {
	T              float64 `json:"t_seconds"` // since the load started
	RSSMiB         float64 `json:"rss_mib"`
	HeapLiveMiB    float64 `json:"heap_live_mib"`    // marked live by the last GC
	HeapObjectsMiB float64 `json:"heap_objects_mib"` // live and not yet swept
	Goroutines     int     `json:"goroutines"`
	GCCycles       int64   `json:"gc_cycles"`
	Requests       int64   `json:"requests"` // unary requests and streams completed so far
}

// Trend is the least-squares fit of one series over the measured window.
type Trend struct {
	Series       string  `json:"series"`
	Unit         string  `json:"unit"`
	First        float64 `json:"first"`
	Last         float64 `json:"last"`
	Mean         float64 `json:"mean"`
	Min          float64 `json:"min"`
	Max          float64 `json:"max"`
	SlopePerMin  float64 `json:"slope_per_minute"`
	StdErrPerMin float64 `json:"slope_stderr_per_minute"`
	LimitPerMin  float64 `json:"limit_per_minute"`
	Growth       bool    `json:"growth"`
}

// Soak is the soak part's result.
type Soak struct {
	Seconds       float64      `json:"seconds"` // load, warm-up included
	WarmupSeconds float64      `json:"warmup_seconds"`
	Interval      float64      `json:"interval_seconds"`
	SettleSeconds float64      `json:"settle_seconds"` // from the end of the load to the idle_after reading
	RateLimit     float64      `json:"unary_rate_limit"`
	Requests      int64        `json:"unary_requests"`
	Streams       int64        `json:"streams_completed"`
	Aborted       int64        `json:"streams_aborted"`
	Errors        int64        `json:"errors"`
	FirstError    string       `json:"first_error,omitempty"`
	Samples       []SoakSample `json:"samples"`
	Before        SoakSample   `json:"idle_before"`
	After         SoakSample   `json:"idle_after"`
	Trends        []Trend      `json:"trends"`
	Verdict       string       `json:"verdict"`
}

// soakChildMain runs the soak child until SIGTERM; main and TestMain call
// it when soakChildEnv is set.
func soakChildMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := soakChild(ctx, os.Getenv(soakChildEnv), os.Getenv(soakStateEnv), os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "duo-bench soak child: %v\n", err)
		return 1
	}
	return 0
}

// soakChild serves the appliance on 127.0.0.1 with the sandbox of dir and
// logs one "soak child listening" line with both addresses.
func soakChild(ctx context.Context, dir, state string, logTo io.Writer) error {
	sb, err := loadSoakSandbox(dir)
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.StateDir = state
	cfg.TLS.Source = apptls.SourceOff // plain HTTP, like the other parts
	log := slog.New(slog.NewJSONHandler(logTo, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := appliance.New(appliance.Options{Config: cfg, Logger: log, Version: "duo-bench-soak", Sandbox: sb, APIKey: sandboxAPIKey})
	if err != nil {
		return fmt.Errorf("appliance: %w", err)
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pln.Close()
		return err
	}
	stats := &http.Server{Handler: http.HandlerFunc(serveRuntimeStats), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = stats.Serve(sln) }()
	defer stats.Close()
	log.Info("soak child listening", "proxy", pln.Addr().String(), "stats", sln.Addr().String())
	return a.RunListeners(ctx, appliance.Listeners{Proxy: pln}, 2*time.Second)
}

// loadSoakSandbox reads the sandbox directory as `serve --sandbox` does.
func loadSoakSandbox(dir string) (*appliance.Sandbox, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("sandbox directory: %w", err)
		}
		return b, nil
	}
	ep, err := read(soakEndpointFile)
	if err != nil {
		return nil, err
	}
	rootsPEM, err := read(soakRootsFile)
	if err != nil {
		return nil, err
	}
	roots, err := attest.ParseTestRoots(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("sandbox roots: %w", err)
	}
	manifest, err := read(soakManifestFile)
	if err != nil {
		return nil, err
	}
	bundle, err := collateral.Load(filepath.Join(dir, soakCollateralFile))
	if err != nil {
		return nil, fmt.Errorf("sandbox collateral: %w", err)
	}
	return &appliance.Sandbox{Endpoint: strings.TrimSpace(string(ep)), Roots: roots, Collateral: bundle, Manifest: manifest}, nil
}

// writeSoakSandbox writes what the child needs to trust sb at endpoint.
func writeSoakSandbox(dir, endpoint string, sb *sandbox.Server) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bundle, err := appliance.SandboxBundle(sb, time.Now())
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{soakEndpointFile: []byte(endpoint + "\n"), soakRootsFile: sb.Backend().RootsPEM(), soakManifestFile: sb.Manifest()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return bundle.WriteFile(filepath.Join(dir, soakCollateralFile))
}

// runtimeStats is the soak child's stats document.
type runtimeStats struct {
	Goroutines       int64  `json:"goroutines"`
	HeapLiveBytes    uint64 `json:"heap_live_bytes"`
	HeapObjectsBytes uint64 `json:"heap_objects_bytes"`
	GCCycles         uint64 `json:"gc_cycles"`
}

// serveRuntimeStats answers with runtime/metrics readings, which unlike
// runtime.ReadMemStats do not stop the world.
func serveRuntimeStats(w http.ResponseWriter, _ *http.Request) {
	ss := []metrics.Sample{
		{Name: "/sched/goroutines:goroutines"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(ss)
	u := func(i int) uint64 {
		if ss[i].Value.Kind() == metrics.KindUint64 {
			return ss[i].Value.Uint64()
		}
		return 0
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(runtimeStats{Goroutines: int64(u(0)), HeapLiveBytes: u(1), HeapObjectsBytes: u(2), GCCycles: u(3)})
}

// soakChildProc starts the soak child for the sandbox directory dir and
// waits until its proxy is ready.
func soakChildProc(ctx context.Context, dir, state string) (c *childProc, proxyURL, statsURL string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", "", err
	}
	var addrs atomic.Value
	up := make(chan struct{})
	c, err = start(exe, nil, []string{soakChildEnv + "=" + dir, soakStateEnv + "=" + state}, func(line string) bool {
		var l struct{ Msg, Proxy, Stats string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "soak child listening" {
			addrs.Store([2]string{l.Proxy, l.Stats})
			close(up)
			return true
		}
		return false
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("start soak child: %w", err)
	}
	if err := waitChan(ctx, up, c, 30*time.Second); err != nil {
		c.stop()
		return nil, "", "", fmt.Errorf("soak child: %w\n%s", err, c.tail)
	}
	a := addrs.Load().([2]string)
	proxyURL, statsURL = "http://"+a[0], "http://"+a[1]+"/"
	if err := waitReady(ctx, proxyURL, 30*time.Second); err != nil {
		c.stop()
		return nil, "", "", fmt.Errorf("soak child: %w\n%s", err, c.tail)
	}
	return c, proxyURL, statsURL, nil
}

// soakSample reads the child's RSS and runtime stats.
func soakSample(ctx context.Context, pid int, statsURL string) (SoakSample, error) {
	var s SoakSample
	var err error
	if s.RSSMiB, err = rssMiB(pid, "VmRSS"); err != nil {
		return s, err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, statsURL, nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	defer resp.Body.Close()
	var st runtimeStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	const mib = 1 << 20
	s.HeapLiveMiB, s.HeapObjectsMiB = float64(st.HeapLiveBytes)/mib, float64(st.HeapObjectsBytes)/mib
	s.Goroutines, s.GCCycles = int(st.Goroutines), int64(st.GCCycles)
	return s, nil
}

// soakLoad is the running load and its counters.
type soakLoad struct {
	requests, streams, aborted, errs atomic.Int64
	firstErr                         atomic.Value // string
}

func (l *soakLoad) fail(err error) {
	l.errs.Add(1)
	l.firstErr.CompareAndSwap(nil, err.Error())
}

// run drives the load against url until ctx ends and returns once every
// client has stopped.
func (l *soakLoad) run(ctx context.Context, url string, rate float64) {
	keep, churn := newTransport(soakUnaryClients), newTransport(1)
	churn.DisableKeepAlives = true
	streams := newTransport(soakStreamClients)
	defer func() {
		for _, t := range []*http.Transport{keep, churn, streams} {
			t.CloseIdleConnections()
		}
	}()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	unary := target{url: url, body: chatBody(32, false)}
	var wg sync.WaitGroup
	for i := range soakUnaryClients + soakChurnClients {
		tr := keep
		if i >= soakUnaryClients {
			tr = churn
		}
		wg.Go(func() {
			c := &client{tr: tr, target: unary}
			for {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				if err := c.do(ctx); ctx.Err() != nil {
					return
				} else if err != nil {
					l.fail(err)
				} else {
					l.requests.Add(1)
				}
			}
		})
	}
	body := chatBody(soakStreamTokens, true)
	for range soakStreamClients {
		wg.Go(func() {
			for n := 1; ctx.Err() == nil; n++ {
				abort := n%soakAbortEvery == 0
				err := soakStream(ctx, streams, url, body, abort)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					l.fail(err)
				case abort:
					l.aborted.Add(1)
				default:
					l.streams.Add(1)
				}
			}
		})
	}
	wg.Wait()
}

// soakStream reads one stream to its [DONE], or with abort cancels it
// after the first event.
func soakStream(ctx context.Context, tr *http.Transport, url string, body []byte, abort bool) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("stream: HTTP %d: %s", resp.StatusCode, b)
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			return nil
		}
		if abort && bytes.HasPrefix(line, []byte("data:")) {
			cancel()
			return nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream ended without [DONE]: %w", err)
		}
	}
}

// fitLine is the least-squares line y = a + b·x; se is b's standard error
// (0 with fewer than three points).
func fitLine(xs, ys []float64) (b, se float64) {
	n := float64(len(xs))
	if len(xs) < 2 {
		return 0, 0
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/n, my/n
	var sxx, sxy float64
	for i := range xs {
		sxx += (xs[i] - mx) * (xs[i] - mx)
		sxy += (xs[i] - mx) * (ys[i] - my)
	}
	if sxx == 0 {
		return 0, 0
	}
	b = sxy / sxx
	if len(xs) < 3 {
		return b, 0
	}
	var rss float64
	for i := range xs {
		r := ys[i] - (my + b*(xs[i]-mx))
		rss += r * r
	}
	return b, math.Sqrt(rss / (n - 2) / sxx)
}

// trend fits one series of the samples taken after the warm-up.
func trend(series, unit string, samples []SoakSample, warmup float64, get func(SoakSample) float64, limit func(mean float64) float64) Trend {
	t := Trend{Series: series, Unit: unit, Min: math.Inf(1), Max: math.Inf(-1)}
	var xs, ys []float64
	for _, s := range samples {
		if s.T < warmup {
			continue
		}
		v := get(s)
		xs, ys = append(xs, s.T/60), append(ys, v)
		t.Mean += v
		t.Min, t.Max = math.Min(t.Min, v), math.Max(t.Max, v)
	}
	if len(ys) == 0 {
		t.Min, t.Max = 0, 0
		return t
	}
	t.First, t.Last, t.Mean = ys[0], ys[len(ys)-1], t.Mean/float64(len(ys))
	t.SlopePerMin, t.StdErrPerMin = fitLine(xs, ys)
	t.LimitPerMin = limit(t.Mean)
	t.Growth = t.SlopePerMin > t.LimitPerMin && t.SlopePerMin > soakSignificantStdErr*t.StdErrPerMin
	return t
}
