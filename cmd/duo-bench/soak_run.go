package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// measureSoak runs the soak part: an encrypted sandbox here, the soak
// child in front of it, cfg.Soak of bounded load, a sample every
// cfg.SoakInterval, and the trends over the samples after cfg.SoakWarmup.
func measureSoak(ctx context.Context, cfg Config, logf func(string, ...any)) (*Soak, error) {
	raiseNoFile()
	tmp, err := os.MkdirTemp("", "duo-bench-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	sb, sbURL, err := serveSandbox(sandbox.Options{Logger: slog.New(slog.DiscardHandler), RecordSize: -1, TokensPerSecond: soakTokensPerSec}, &closers)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	dir := filepath.Join(tmp, "sandbox")
	if err := writeSoakSandbox(dir, sbURL, sb); err != nil {
		return nil, fmt.Errorf("sandbox directory: %w", err)
	}
	child, proxyURL, statsURL, err := soakChildProc(ctx, dir, filepath.Join(tmp, "state"))
	if err != nil {
		return nil, err
	}
	defer child.stop()
	pid := child.cmd.Process.Pid
	res := &Soak{Seconds: cfg.Soak.Seconds(), WarmupSeconds: cfg.SoakWarmup.Seconds(), Interval: cfg.SoakInterval.Seconds(), RateLimit: cfg.SoakRate}
	sleepCtx(ctx, cfg.Settle)
	if res.Before, err = soakSample(ctx, pid, statsURL); err != nil {
		return nil, err
	}
	logf("soak: %v of load (%.0f unary req/s over %d keep-alive clients and %d reconnecting one, %d clients of %d-token streams at %d tokens/s, every %dth cancelled mid-stream), a sample every %v, trends after %v",
		cfg.Soak, cfg.SoakRate, soakUnaryClients, soakChurnClients, soakStreamClients, soakStreamTokens, soakTokensPerSec, soakAbortEvery, cfg.SoakInterval, cfg.SoakWarmup)

	load := &soakLoad{}
	lctx, stopLoad := context.WithTimeout(ctx, cfg.Soak)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() {
		load.run(lctx, proxyURL+"/v1/chat/completions", cfg.SoakRate)
		close(loadDone)
	}()
	t0 := time.Now()
	tick := time.NewTicker(cfg.SoakInterval)
	nextLog := cfg.Soak / 10
	for lctx.Err() == nil {
		select {
		case <-tick.C:
		case <-lctx.Done():
			continue
		case <-child.done:
			return nil, fmt.Errorf("soak child exited\n%s", child.tail)
		}
		s, err := soakSample(ctx, pid, statsURL)
		if err != nil {
			return nil, fmt.Errorf("sample: %w", err)
		}
		s.T = time.Since(t0).Seconds()
		s.Requests = load.requests.Load() + load.streams.Load() + load.aborted.Load()
		res.Samples = append(res.Samples, s)
		if el := time.Since(t0); el >= nextLog {
			nextLog += cfg.Soak / 10
			logf("soak %v: RSS %.1f MiB, heap live %.1f MiB, %d goroutines, %d requests, %d errors",
				el.Round(time.Second), s.RSSMiB, s.HeapLiveMiB, s.Goroutines, s.Requests, load.errs.Load())
		}
	}
	tick.Stop()
	<-loadDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Requests, res.Streams, res.Aborted, res.Errors = load.requests.Load(), load.streams.Load(), load.aborted.Load(), load.errs.Load()
	if e, ok := load.firstErr.Load().(string); ok {
		res.FirstError = e
	}
	// Idle again: wait (at most 30 s) for the goroutines to come back to
	// where they were before the load; the server's idle workers and the
	// closed connections' goroutines take a few seconds to go.
	tEnd := time.Now()
	for {
		sleepCtx(ctx, cfg.Settle)
		if res.After, err = soakSample(ctx, pid, statsURL); err != nil {
			return nil, err
		}
		if res.After.Goroutines <= res.Before.Goroutines+soakIdleSlack || time.Since(tEnd) > 30*time.Second || ctx.Err() != nil {
			break
		}
	}
	res.SettleSeconds = time.Since(tEnd).Seconds()
	res.After.T = time.Since(t0).Seconds()
	w := res.WarmupSeconds
	mem := func(mean float64) float64 { return soakMemLimitFrac * mean }
	res.Trends = []Trend{
		trend("RSS", "MiB", res.Samples, w, func(s SoakSample) float64 { return s.RSSMiB }, mem),
		trend("Go heap, live after the last GC", "MiB", res.Samples, w, func(s SoakSample) float64 { return s.HeapLiveMiB }, mem),
		trend("goroutines", "", res.Samples, w, func(s SoakSample) float64 { return float64(s.Goroutines) }, func(float64) float64 { return soakGoroutineLimit }),
	}
	var grows []string
	for _, t := range res.Trends {
		if t.Growth {
			grows = append(grows, t.Series)
		}
	}
	res.Verdict = "no growth trend"
	if len(grows) > 0 {
		res.Verdict = "GROWTH: " + strings.Join(grows, ", ")
	}
	return res, nil
}

// Markdown writes the soak part's table.
func (s *Soak) Markdown(w io.Writer) {
	fitted := 0
	for _, x := range s.Samples {
		if x.T >= s.WarmupSeconds {
			fitted++
		}
	}
	fmt.Fprintf(w, "Soak: %.0f s of load against the soak child (the appliance as `serve --sandbox` wires it), %d samples every %.0f s, trends over the %d after the first %.0f s; %d unary requests (limit %.0f/s), %d streams completed, %d cancelled mid-stream by the client, %d errors.\n\n",
		s.Seconds, len(s.Samples), s.Interval, fitted, s.WarmupSeconds, s.Requests, s.RateLimit, s.Streams, s.Aborted, s.Errors)
	fmt.Fprintln(w, "| series | idle before | first | last | min–max | slope per minute (± std. error) | limit per minute | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	before := map[string]float64{"RSS": s.Before.RSSMiB, "goroutines": float64(s.Before.Goroutines)}
	for _, t := range s.Trends {
		b, ok := before[t.Series]
		if !ok {
			b = s.Before.HeapLiveMiB
		}
		unit := " " + t.Unit
		if t.Unit == "" {
			unit = ""
		}
		fmt.Fprintf(w, "| %s | %.1f%s | %.1f%s | %.1f%s | %.1f–%.1f%s | %+.3f%s (± %.3f) | %.3f%s | %s |\n",
			t.Series, b, unit, t.First, unit, t.Last, unit, t.Min, t.Max, unit, t.SlopePerMin, unit, t.StdErrPerMin, t.LimitPerMin, unit, map[bool]string{false: "no trend", true: "GROWTH"}[t.Growth])
	}
	fmt.Fprintf(w, "\nIdle again %.1f s after the load: RSS %.1f MiB, heap live %.1f MiB, %d goroutines (idle before: %d). Verdict: **%s**.\n",
		s.SettleSeconds, s.After.RSSMiB, s.After.HeapLiveMiB, s.After.Goroutines, s.Before.Goroutines, s.Verdict)
	if s.FirstError != "" {
		fmt.Fprintf(w, "\nFirst error: %.300s\n", s.FirstError)
	}
}
