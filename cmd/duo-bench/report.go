package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// Targets from issue 3 (issue 4's are in gateway.go).
const (
	targetAddedP50    = 0.2   // ms
	targetAddedP99    = 1.0   // ms
	targetRatio       = 0.40  // proxied / direct throughput
	targetChunks      = 50000 // chunks/s through the proxy
	targetIdleMiB     = 40
	targetStreamsMiB  = 250
	targetStreamsOpen = 1000
)

// Report is everything one run measured.
type Report struct {
	Date       string      `json:"date"`
	Command    string      `json:"command"`
	CPUModel   string      `json:"cpu_model"`
	Cores      int         `json:"cores"`
	GoVersion  string      `json:"go_version"`
	LoadBefore string      `json:"load_average_before"`
	LoadAfter  string      `json:"load_average_after"`
	Parts      []string    `json:"parts"`
	Latency    *Latency    `json:"latency"`
	Throughput *Throughput `json:"throughput"`
	SSE        *SSE        `json:"sse"`
	Memory     *Memory     `json:"memory,omitempty"`
	CPU        *CPU        `json:"cpu,omitempty"`
	// Gateway is issue 4's part (-parts gateway).
	Gateway *GatewayResult `json:"gateway,omitempty"`
	// Nginx is the pass-through baseline of the proxy part (nginx.go).
	Nginx *NginxResult `json:"nginx,omitempty"`
	// Soak is issue 8's soak part (-parts soak).
	Soak *Soak `json:"soak,omitempty"`
	// Bodies is issue 14's request-body part (-parts bodies).
	Bodies *Bodies  `json:"bodies,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// bench runs the selected parts in order: proxy, child, gateway.
func bench(ctx context.Context, cfg Config, logf func(string, ...any)) (*Report, error) {
	rep := &Report{
		Date:       time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		CPUModel:   cpuModel(),
		Cores:      runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		LoadBefore: loadAvg(),
		Parts:      cfg.Parts,
	}
	if cfg.part("proxy") {
		if err := benchProxy(ctx, cfg, rep, logf); err != nil {
			return nil, err
		}
	}
	if cfg.part("child") {
		var err error
		logf("4-5/5 RSS and CPU of a `serve` child process")
		if rep.Memory, rep.CPU, err = childResults(ctx, cfg, logf); err != nil {
			return nil, fmt.Errorf("child processes: %w", err)
		}
	}
	if cfg.part("gateway") {
		var err error
		logf("gateway (issue 4)")
		if rep.Gateway, err = measureGateway(ctx, cfg, logf); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if cfg.part("soak") {
		var err error
		logf("soak (issue 8)")
		if rep.Soak, err = measureSoak(ctx, cfg, logf); err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
	}
	if cfg.part("bodies") {
		var err error
		logf("request bodies (issue 14)")
		if rep.Bodies, err = measureBodies(ctx, cfg, logf); err != nil {
			return nil, fmt.Errorf("bodies: %w", err)
		}
	}
	rep.LoadAfter = loadAvg()
	rep.notes()
	return rep, nil
}

// benchProxy runs parts 1–3 against the in-process proxy.
func benchProxy(ctx context.Context, cfg Config, rep *Report, logf func(string, ...any)) error {
	r, err := startRig(ctx, 0, logf)
	if err != nil {
		return err
	}
	defer r.close()

	logf("1/5 latency: %d warm-up + %d measured requests per path, concurrency 1", cfg.Warmup, cfg.Requests)
	if rep.Latency, err = measureLatency(ctx, cfg, r); err != nil {
		return fmt.Errorf("latency: %w", err)
	}

	logf("2/5 throughput: concurrency %d, %v per path", cfg.Concurrency, cfg.ThroughDur)
	body := chatBody(cfg.ReplyTokens, false)
	tp := &Throughput{Concurrency: cfg.Concurrency}
	if tp.Direct, err = measureThroughput(ctx, cfg, target{url: r.direct + "/v1/chat/completions", body: body}); err != nil {
		return fmt.Errorf("throughput direct: %w", err)
	}
	stopProfile, err := startProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	tp.Proxy, err = measureThroughput(ctx, cfg, target{url: r.proxied + "/v1/chat/completions", body: body})
	stopProfile()
	if err != nil {
		return fmt.Errorf("throughput proxy: %w", err)
	}
	nullURL, stopNull, err := nullServer()
	if err != nil {
		return err
	}
	cc := cfg
	cc.ThroughDur = max(cfg.ThroughDur/2, 100*time.Millisecond)
	tp.Ceiling, err = measureThroughput(ctx, cc, target{url: nullURL + "/v1/chat/completions", body: body})
	stopNull()
	if err != nil {
		return fmt.Errorf("throughput ceiling: %w", err)
	}
	if tp.Direct.PerSecond > 0 {
		tp.Ratio = tp.Proxy.PerSecond / tp.Direct.PerSecond
	}
	rep.Throughput = tp

	logf("3/5 SSE: %d concurrent streams of %d tokens, %v per path", cfg.Streams, cfg.StreamTokens, cfg.StreamDur)
	s := &SSE{Streams: cfg.Streams, TokensEach: cfg.StreamTokens}
	var bad int
	if s.DirectChunks, s.DirectSeconds, s.DirectCPU, bad, err = measureSSE(ctx, cfg, r.direct+"/v1/chat/completions"); err != nil {
		return fmt.Errorf("SSE direct: %w", err)
	}
	s.Incomplete += bad
	if s.ProxyChunks, s.ProxySeconds, s.ProxyCPU, bad, err = measureSSE(ctx, cfg, r.proxied+"/v1/chat/completions"); err != nil {
		return fmt.Errorf("SSE proxy: %w", err)
	}
	s.Incomplete += bad
	s.DirectRate = float64(s.DirectChunks) / s.DirectSeconds
	s.ProxyRate = float64(s.ProxyChunks) / s.ProxySeconds
	s.DirectCPUPerChunk = 1e6 * s.DirectCPU / 100 * s.DirectSeconds / float64(max(s.DirectChunks, 1))
	s.ProxyCPUPerChunk = 1e6 * s.ProxyCPU / 100 * s.ProxySeconds / float64(max(s.ProxyChunks, 1))
	rep.SSE = s

	if rep.Nginx, err = benchNginx(ctx, cfg, r, rep, logf); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	return nil
}

// notes records caveats the numbers themselves show.
func (r *Report) notes() {
	tp := r.Throughput
	if tp != nil && tp.Ceiling.PerSecond > 0 && tp.Direct.PerSecond > 0.7*tp.Ceiling.PerSecond {
		r.Notes = append(r.Notes, fmt.Sprintf("the direct throughput (%.0f req/s) is within 30%% of what this client drives against a null server (%.0f req/s): the load generator limits the baseline, so the ratio is conservative", tp.Direct.PerSecond, tp.Ceiling.PerSecond))
	}
	if r.Soak != nil && r.Soak.Errors > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d soak requests failed; the first: %.200s", r.Soak.Errors, r.Soak.FirstError))
	}
	if r.SSE != nil && r.SSE.Incomplete > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d streams ended without [DONE]", r.SSE.Incomplete))
	}
	var rates []*Rate
	if tp != nil {
		rates = append(rates, &tp.Direct, &tp.Proxy)
	}
	if g := r.Gateway; g != nil {
		rates = append(rates, &g.Throughput.Direct, &g.Throughput.Gateway)
		if g.RouteNote != "" {
			r.Notes = append(r.Notes, g.RouteNote)
		}
	}
	for _, x := range rates {
		if x.Errors > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%d requests failed during a throughput run", x.Errors))
		}
	}
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// Markdown writes the report as a markdown section body.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Machine: %s, %d cores, %s; load average before the run: %s\n\n", r.CPUModel, r.Cores, r.GoVersion, r.LoadBefore)
	fmt.Fprintf(w, "Date: %s\n\nCommand: `%s`\n\n", r.Date, r.Command)
	r.summaryTable(w)
	if r.Latency != nil || r.Throughput != nil || r.SSE != nil || r.Memory != nil || r.CPU != nil {
		r.proxyTable(w)
	}
	if r.Nginx != nil {
		fmt.Fprintln(w)
		r.Nginx.Markdown(w, r)
	}
	if r.Gateway != nil {
		if r.Latency != nil || r.Memory != nil {
			fmt.Fprintln(w)
		}
		r.Gateway.Markdown(w)
	}
	if r.Soak != nil {
		if r.Latency != nil || r.Memory != nil || r.Gateway != nil {
			fmt.Fprintln(w)
		}
		r.Soak.Markdown(w)
	}
	if r.Bodies != nil {
		fmt.Fprintln(w)
		r.Bodies.Markdown(w)
	}
	fmt.Fprintf(w, "\nLoad average after the run: %s\n", r.LoadAfter)
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// proxyTable writes parts 1–5.
func (r *Report) proxyTable(w io.Writer) {
	fmt.Fprintln(w, "| measurement | direct (plaintext sandbox) | through the proxy (encrypted sandbox) | result | target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "| latency p50, %d B chat, c=1, %d requests | %.3f ms | %.3f ms | +%.3f ms added | ≤ %.1f ms | %s |\n",
			l.BodyBytes, l.Requests, l.DirectP50, l.ProxyP50, l.AddedP50, targetAddedP50, passMiss(l.AddedP50 <= targetAddedP50))
		fmt.Fprintf(w, "| latency p90 | %.3f ms | %.3f ms | +%.3f ms added | | |\n", l.DirectP90, l.ProxyP90, l.AddedP90)
		fmt.Fprintf(w, "| latency p99 | %.3f ms | %.3f ms | +%.3f ms added | ≤ %.1f ms | %s |\n",
			l.DirectP99, l.ProxyP99, l.AddedP99, targetAddedP99, passMiss(l.AddedP99 <= targetAddedP99))
		fmt.Fprintf(w, "| latency, median of paired differences | | | +%.3f ms | | |\n", l.PairedMedian)
	}
	if t := r.Throughput; t != nil {
		fmt.Fprintf(w, "| throughput, c=%d | %.0f req/s (CPU %.0f%%) | %.0f req/s (CPU %.0f%%) | %.0f%% of direct | ≥ %.0f%% | %s |\n",
			t.Concurrency, t.Direct.PerSecond, t.Direct.ProcessCPU, t.Proxy.PerSecond, t.Proxy.ProcessCPU, 100*t.Ratio, 100*targetRatio, passMiss(t.Ratio >= targetRatio))
		fmt.Fprintf(w, "| client ceiling (same client, null server) | %.0f req/s (CPU %.0f%%) | | | | |\n", t.Ceiling.PerSecond, t.Ceiling.ProcessCPU)
	}
	if s := r.SSE; s != nil {
		fmt.Fprintf(w, "| SSE, %d streams × %d tokens | %.0f chunks/s (CPU %.0f%%) | %.0f chunks/s (CPU %.0f%%) | %.0f%% of direct | ≥ %d chunks/s | %s |\n",
			s.Streams, s.TokensEach, s.DirectRate, s.DirectCPU, s.ProxyRate, s.ProxyCPU, 100*s.ProxyRate/max(s.DirectRate, 1), targetChunks, passMiss(s.ProxyRate >= targetChunks))
		fmt.Fprintf(w, "| SSE, process CPU per chunk (client + sandbox + proxy) | %.2f µs | %.2f µs | | | |\n", s.DirectCPUPerChunk, s.ProxyCPUPerChunk)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "| `serve` RSS idle (after ready) | | %.1f MiB | | ≤ %d MB | %s |\n", m.IdleMiB, targetIdleMiB, passMiss(m.IdleMiB*1.048576 <= targetIdleMiB))
		fmt.Fprintf(w, "| `serve` RSS after the CPU batch | | %.1f MiB | | | |\n", m.AfterCPUMiB)
		for _, s := range m.Streams {
			target, verdict := "", ""
			if s.Open == targetStreamsOpen {
				target, verdict = fmt.Sprintf("≤ %d MB", targetStreamsMiB), passMiss(s.RSSMiB*1.048576 <= targetStreamsMiB)
			}
			fmt.Fprintf(w, "| `serve` RSS, %d open streams | | %.1f MiB | | %s | %s |\n", s.Open, s.RSSMiB, target, verdict)
		}
		fmt.Fprintf(w, "| `serve` peak RSS (VmHWM) | | %.1f MiB | | | |\n", m.PeakMiB)
	}
	if c := r.CPU; c != nil {
		fmt.Fprintf(w, "| `serve` CPU per unary request (%d requests, c=%d) | | %.0f µs | sandbox child: %.0f µs | reported | |\n",
			c.Requests, c.Concurrency, c.MicrosPerReq, 1e6*c.SandboxCPUSecs/float64(c.Requests))
	}
	fmt.Fprintln(w, "| allocations per request | | see `go test -bench . -benchmem ./proxy/` | | reported | |")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// startProfile starts a CPU profile into path (none if path is empty).
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
