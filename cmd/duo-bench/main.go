// Command duo-bench measures the attesting encryption proxy against the
// sandbox backend's plaintext mode, on loopback, in one run (issue 3's
// performance targets), and on request the GitLab AI Gateway in front of
// it (issue 4). The parts (-parts, default "proxy,child"):
//
// proxy (in process):
//
//  1. added latency of a 4 KB chat request at concurrency 1;
//  2. throughput of that request at concurrency 32, direct vs proxied;
//  3. SSE chunks per second through the proxy and direct;
//
// child (child processes):
//
//  4. resident memory of a real `duo-confidential serve` child process,
//     idle and with 1, 100 and 1,000 open streams;
//  5. CPU time per request of that child.
//
// gateway (in process, gateway.go):
//
//  6. latency the gateway adds at concurrency 1 over calling the proxy
//     directly with the request the gateway sends it, and throughput of
//     both at -concurrency.
//
// nginx (nginx.go), when nginx is installed; part of "proxy" unless
// -nginx=false:
//
//  7. the same direct workload through nginx as a plain pass-through
//     reverse proxy started here on loopback: latency, throughput, SSE and
//     nginx's CPU per request, a floor for what any hop costs.
//
// bodies (bodies.go; not in "all"):
//
//  9. peak RSS of a `serve` child per MiB of request body in flight (one
//     large string; the 31 MB body of tiny keys, refused before parsing),
//     and a burst of 16 MiB bodies with the default in-flight cap and
//     with proxy.max_in_flight: 4.
//
// soak (soak.go; not in "all"):
//
//  8. -soak of bounded load against a child process running the
//     appliance, its RSS, Go heap and goroutines sampled every
//     -soak-interval, with least-squares slopes per minute and a verdict.
//
// -parts all is proxy (with nginx), child and gateway.
//
// Parts 1–3 run in this process: a plaintext sandbox (the baseline, which
// the client calls directly) and an encrypted sandbox behind the real
// appliance in sandbox mode (attestation and secret exchange at start).
// Parts 4–5 build the command and run `sandbox` and `serve` as children,
// so the proxy's memory and CPU are measured apart from the load generator.
//
// The gateway part starts an encrypted sandbox behind the real appliance
// with the gateway enabled and a demo GitLab issuer over TLS, as the demo
// command does, and compares POST /v2/code/completions with Rails' headers
// and a GitLab token against the proxy's own route called with the body
// the gateway sends (recorded once from a twin of the gateway; see
// captureModelRequest).
//
// Allocations per request come from `go test -bench . ./proxy/` (see
// proxy/bench_test.go) and, for the gateway, from BenchmarkCompletion in
// ./gateway/, not from this command.
//
// Everything listens on 127.0.0.1; every load loop is bounded in count and
// time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config holds the flags.
type Config struct {
	Warmup       int           // unary requests per path before measuring
	Requests     int           // latency: measured requests per path
	Concurrency  int           // throughput: concurrent clients
	ThroughDur   time.Duration // throughput: duration per path
	ThroughMax   int           // throughput: request cap per path
	ReplyTokens  int           // unary reply length
	Streams      int           // SSE: concurrent streams
	StreamTokens int           // SSE: tokens per stream
	StreamDur    time.Duration // SSE: duration per path
	StreamMax    int           // SSE: stream cap per path
	Child        bool          // run parts 4 and 5
	Bin          string        // prebuilt duo-confidential binary (default: go build)
	OpenStreams  []int         // RSS: open-stream levels
	CPURequests  int           // CPU: requests in the measured batch
	Settle       time.Duration // RSS: wait before reading
	JSON         string        // also write the report as JSON here ("-": stdout only JSON)
	Timeout      time.Duration // whole run
	CPUProfile   string        // write a CPU profile of the in-process throughput phase through the proxy
	Parts        []string      // parts to run: proxy, gateway, child
	GatewayRoute string        // gateway: "auto", routeCompletions or routeCommitMessage
	// CompletionFormat is the gateway's completion_format: "chat" makes
	// code completions call /v1/chat/completions, like the proxy part.
	CompletionFormat  string
	TokenPool         int    // gateway throughput: pre-minted tokens
	GatewayCPUProfile string // write a CPU profile of the gateway throughput phase
	Nginx             string // nginx binary for part 7 ("" finds it on PATH, "false" skips it)
	Soak              time.Duration
	SoakInterval      time.Duration
	SoakWarmup        time.Duration // samples before this are not fitted
	SoakRate          float64       // unary requests per second, all clients together
}

// part reports whether part p is selected.
func (c Config) part(p string) bool {
	if p == "child" && !c.Child {
		return false
	}
	return slices.Contains(c.Parts, p)
}

func defaultConfig() Config {
	return Config{
		Warmup: 300, Requests: 3000, Concurrency: 32,
		ThroughDur: 10 * time.Second, ThroughMax: 2_000_000, ReplyTokens: 32,
		Streams: 4, StreamTokens: 5000, StreamDur: 10 * time.Second, StreamMax: 100_000,
		Child: true, OpenStreams: []int{1, 100, 1000}, CPURequests: 5000,
		Settle: 3 * time.Second, Timeout: 6 * time.Minute,
		Parts: []string{"proxy", "child"}, GatewayRoute: "auto", CompletionFormat: "chat", TokenPool: 1024,
		Soak: 10 * time.Minute, SoakInterval: 10 * time.Second, SoakRate: 200,
	}
}

func main() {
	if os.Getenv(soakChildEnv) != "" {
		os.Exit(soakChildMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the benchmark and prints the report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "duo-bench: "+format+"\n", a...) }
	rep, err := bench(ctx, cfg, logf)
	if err != nil {
		logf("error: %v", err)
		return 1
	}
	rep.Command = "go run ./cmd/duo-bench " + strings.Join(args, " ")
	rep.Command = strings.TrimSpace(rep.Command)
	if cfg.JSON == "-" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			logf("error: %v", err)
			return 1
		}
		return 0
	}
	rep.Markdown(stdout)
	if cfg.JSON != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(cfg.JSON, append(b, '\n'), 0o644); err != nil {
			logf("error: %v", err)
			return 1
		}
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("duo-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Warmup, "warmup", c.Warmup, "unary warm-up requests per path")
	fs.IntVar(&c.Requests, "requests", c.Requests, "latency: measured requests per path (concurrency 1, interleaved)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "throughput: concurrent clients")
	fs.DurationVar(&c.ThroughDur, "throughput-duration", c.ThroughDur, "throughput: measuring time per path")
	fs.IntVar(&c.ThroughMax, "throughput-max", c.ThroughMax, "throughput: at most this many requests per path")
	fs.IntVar(&c.ReplyTokens, "reply-tokens", c.ReplyTokens, "max_tokens of the unary chat request")
	fs.IntVar(&c.Streams, "streams", c.Streams, "SSE: concurrent streams")
	fs.IntVar(&c.StreamTokens, "stream-tokens", c.StreamTokens, "SSE: max_tokens per stream (one chunk each)")
	fs.DurationVar(&c.StreamDur, "stream-duration", c.StreamDur, "SSE: measuring time per path")
	fs.IntVar(&c.StreamMax, "stream-max", c.StreamMax, "SSE: at most this many streams per path")
	fs.BoolVar(&c.Child, "child", c.Child, "measure RSS and CPU of a `duo-confidential serve` child process")
	fs.StringVar(&c.Bin, "bin", "", "prebuilt duo-confidential binary (default: go build ./cmd/duo-confidential)")
	levels := "1,100,1000"
	fs.StringVar(&levels, "open-streams", levels, "RSS: comma-separated counts of concurrently open streams")
	fs.IntVar(&c.CPURequests, "cpu-requests", c.CPURequests, "CPU: unary requests in the measured batch")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "RSS: wait this long before each reading")
	fs.StringVar(&c.JSON, "json", "", "also write the report as JSON to this file; '-' prints only JSON to stdout")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "abort the whole run after this long")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of this process during the proxied throughput phase to this file")
	parts := strings.Join(c.Parts, ",")
	fs.StringVar(&parts, "parts", parts, "comma-separated parts to run: proxy (latency, throughput, SSE, nginx), child (RSS and CPU of a serve child), gateway (issue 4), soak (issue 8), bodies (peak RSS per MiB of request body, in-flight cap; issue 14), or all (proxy, child, gateway)")
	fs.StringVar(&c.GatewayRoute, "gateway-route", c.GatewayRoute, "gateway: route to measure: auto ("+routeCompletions+", or "+routeCommitMessage+" while the former answers 501), "+routeCompletions+" or "+routeCommitMessage)
	fs.StringVar(&c.CompletionFormat, "completion-format", c.CompletionFormat, "gateway: gateway.completion_format; chat calls /v1/chat/completions, suffix /v1/completions")
	fs.IntVar(&c.TokenPool, "token-pool", c.TokenPool, "gateway throughput: distinct pre-minted GitLab tokens used round-robin")
	fs.StringVar(&c.GatewayCPUProfile, "gateway-cpuprofile", "", "write a CPU profile of this process during the gateway throughput phase to this file")
	fs.StringVar(&c.Nginx, "nginx", "", "nginx binary for the pass-through baseline (default: nginx on PATH or in /usr/sbin; false: skip it)")
	fs.DurationVar(&c.Soak, "soak", c.Soak, "soak: how long to run the load")
	fs.DurationVar(&c.SoakInterval, "soak-interval", c.SoakInterval, "soak: time between samples")
	fs.DurationVar(&c.SoakWarmup, "soak-warmup", 0, "soak: samples before this are not fitted (default: a fifth of -soak, at most 1m)")
	fs.Float64Var(&c.SoakRate, "soak-rate", c.SoakRate, "soak: unary requests per second, all clients together")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	timeoutSet := false
	fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
	c.Parts = nil
	for f := range strings.SplitSeq(parts, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		sel := []string{f}
		if f == "all" {
			sel = []string{"proxy", "child", "gateway"}
		} else if f != "proxy" && f != "child" && f != "gateway" && f != "soak" && f != "bodies" {
			fmt.Fprintf(stderr, "duo-bench: --parts: unknown part %q (want proxy, child, gateway, soak, bodies or all)\n", f)
			return c, errors.New("usage")
		}
		for _, f := range sel {
			if !slices.Contains(c.Parts, f) {
				c.Parts = append(c.Parts, f)
			}
		}
	}
	if len(c.Parts) == 0 {
		fmt.Fprintln(stderr, "duo-bench: --parts: no part selected")
		return c, errors.New("usage")
	}
	switch c.GatewayRoute {
	case "auto", routeCompletions, routeCommitMessage:
	default:
		fmt.Fprintf(stderr, "duo-bench: --gateway-route: %q is not auto, %s or %s\n", c.GatewayRoute, routeCompletions, routeCommitMessage)
		return c, errors.New("usage")
	}
	switch c.CompletionFormat {
	case "chat", "suffix":
	default:
		fmt.Fprintf(stderr, "duo-bench: --completion-format: %q is not chat or suffix (the sandbox's models)\n", c.CompletionFormat)
		return c, errors.New("usage")
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "duo-bench: unexpected arguments: %v\n", fs.Args())
		return c, errors.New("usage")
	}
	c.OpenStreams = nil
	for f := range strings.SplitSeq(levels, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 10000 {
			fmt.Fprintf(stderr, "duo-bench: --open-streams: %q is not a count from 1 to 10000\n", f)
			return c, errors.New("usage")
		}
		c.OpenStreams = append(c.OpenStreams, n)
	}
	if c.SoakWarmup == 0 {
		c.SoakWarmup = min(c.Soak/5, time.Minute)
	}
	if c.Soak <= 0 || c.SoakInterval <= 0 || c.SoakWarmup >= c.Soak || c.SoakRate <= 0 {
		fmt.Fprintln(stderr, "duo-bench: --soak, --soak-interval and --soak-rate must be positive and --soak-warmup shorter than --soak")
		return c, errors.New("usage")
	}
	if !timeoutSet {
		// Each part's own bounds, plus slack for builds and start-up.
		if slices.Contains(c.Parts, "gateway") && len(c.Parts) > 1 {
			c.Timeout += 4 * time.Minute
		}
		if slices.Contains(c.Parts, "soak") {
			c.Timeout += c.Soak + 2*time.Minute
		}
	}
	if c.Requests < 1 || c.Concurrency < 1 || c.Streams < 1 || c.StreamTokens < 1 || c.ThroughMax < 1 ||
		c.StreamMax < 1 || c.CPURequests < 1 || c.Warmup < 0 || c.ReplyTokens < 1 || c.TokenPool < 1 {
		fmt.Fprintln(stderr, "duo-bench: counts must be positive")
		return c, errors.New("usage")
	}
	return c, nil
}
