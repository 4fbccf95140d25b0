package main

// Part 7 (issue 8): nginx from the distribution as a plain pass-through
// reverse proxy in front of the plaintext sandbox, started here on
// loopback with a generated minimal configuration: the same direct
// workload through a hop that does nothing but relay, a floor for what any
// hop costs.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NginxResult is part 7's result (milliseconds, µs of CPU).
type NginxResult struct {
	Version string `json:"version"`
	Workers int    `json:"worker_processes"`
	// Latency: direct and through nginx, interleaved at concurrency 1.
	Requests     int     `json:"requests"`
	DirectP50    float64 `json:"direct_p50_ms"`
	DirectP90    float64 `json:"direct_p90_ms"`
	DirectP99    float64 `json:"direct_p99_ms"`
	NginxP50     float64 `json:"nginx_p50_ms"`
	NginxP90     float64 `json:"nginx_p90_ms"`
	NginxP99     float64 `json:"nginx_p99_ms"`
	AddedP50     float64 `json:"added_p50_ms"`
	AddedP90     float64 `json:"added_p90_ms"`
	AddedP99     float64 `json:"added_p99_ms"`
	PairedMedian float64 `json:"paired_median_added_ms"`
	// Throughput at cfg.Concurrency, and nginx's own CPU (master and
	// workers) per request during it.
	Throughput   Rate    `json:"throughput"`
	CPUPerReqUS  float64 `json:"nginx_cpu_us_per_request"`
	SSEChunks    int     `json:"sse_chunks"`
	SSESeconds   float64 `json:"sse_seconds"`
	SSERate      float64 `json:"sse_chunks_per_second"`
	SSECPU       float64 `json:"sse_process_cpu_percent"` // this process: client and sandbox
	CPUPerChunkU float64 `json:"nginx_cpu_us_per_chunk"`
}

// nginxConf is the generated configuration: one upstream with kept-alive
// connections, no buffering either way (SSE must pass as it comes), no
// access log, every path under dir.
const nginxConf = `daemon off;
master_process on;
worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	upstream sandbox {
		server %[3]s;
		keepalive 256;
	}
	server {
		listen %[4]s;
		location / {
			proxy_pass http://sandbox;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering off;
			proxy_request_buffering off;
			proxy_read_timeout 300s;
		}
	}
}
`

// findNginx returns the nginx binary to use, or "" and why there is none.
func findNginx(flagValue string) (bin, why string) {
	switch flagValue {
	case "false", "off", "no":
		return "", "skipped (-nginx=false)"
	case "":
		if p, err := exec.LookPath("nginx"); err == nil {
			return p, ""
		}
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx", ""
		}
		return "", "nginx is not installed (Debian: apt-get install nginx-light), so the pass-through baseline was skipped"
	}
	return flagValue, ""
}

// nginxProc is a running nginx.
type nginxProc struct {
	*childProc
	url     string
	workers int
	version string
}

// startNginx starts bin in front of upstream (host:port) and waits until a
// request passes through it.
func startNginx(ctx context.Context, bin, upstream string) (*nginxProc, func(), error) {
	dir, err := os.MkdirTemp("", "duo-bench-nginx-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	// Workers drop root to nobody; they must reach the temp paths.
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	addr := ln.Addr().String()
	ln.Close() // nginx cannot take a listener; the port is free again for it
	workers := 2
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, workers, dir, upstream, addr), 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	version := "nginx"
	if out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput(); err == nil {
		version = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
	}
	c, err := start(bin, []string{"-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}, nil, nil)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &nginxProc{childProc: c, url: "http://" + addr, workers: workers, version: version}
	stop := func() { c.stop(); cleanup() }
	tr := newTransport(1)
	defer tr.CloseIdleConnections()
	probe := &client{tr: tr, target: target{url: n.url + "/v1/chat/completions", body: chatBody(4, false)}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := probe.do(ctx)
		if err == nil {
			return n, stop, nil
		}
		select {
		case <-c.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			stop()
			return nil, nil, fmt.Errorf("nginx exited: %s%s", c.tail, log)
		default:
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 50*time.Millisecond) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			stop()
			return nil, nil, fmt.Errorf("nginx did not pass a request through: %w\n%s%s", err, c.tail, log)
		}
	}
}

// cpu is the CPU time of nginx's master and its workers.
func (n *nginxProc) cpu() time.Duration {
	master := n.cmd.Process.Pid
	total, _ := cpuTicks(master)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == master {
			continue
		}
		if ppid(pid) == master {
			if t, err := cpuTicks(pid); err == nil {
				total += t
			}
		}
	}
	return total
}

// ppid reads the parent of pid from /proc (0 if unknown).
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// benchNginx runs part 7 against r's plaintext sandbox; nil, nil when
// nginx is not available (why is logged and noted).
func benchNginx(ctx context.Context, cfg Config, r *rig, rep *Report, logf func(string, ...any)) (*NginxResult, error) {
	bin, why := findNginx(cfg.Nginx)
	if bin == "" {
		logf("7 nginx: %s", why)
		rep.Notes = append(rep.Notes, "nginx baseline: "+why)
		return nil, nil
	}
	n, stop, err := startNginx(ctx, bin, strings.TrimPrefix(r.direct, "http://"))
	if err != nil {
		return nil, err
	}
	defer stop()
	res := &NginxResult{Version: n.version, Workers: n.workers, Requests: cfg.Requests}
	logf("7 nginx %s (%d workers) in front of the plaintext sandbox: latency, throughput at c=%d, SSE", n.version, n.workers, cfg.Concurrency)
	body := chatBody(cfg.ReplyTokens, false)
	tr := newTransport(2)
	d := &client{tr: tr, target: target{url: r.direct + "/v1/chat/completions", body: body}}
	x := &client{tr: tr, target: target{url: n.url + "/v1/chat/completions", body: body}}
	dt, nt, diff, err := interleave(ctx, cfg.Warmup, cfg.Requests, d, x, nil)
	tr.CloseIdleConnections()
	if err != nil {
		return nil, fmt.Errorf("nginx latency: %w", err)
	}
	res.DirectP50, res.DirectP90, res.DirectP99 = pct(dt, 50), pct(dt, 90), pct(dt, 99)
	res.NginxP50, res.NginxP90, res.NginxP99 = pct(nt, 50), pct(nt, 90), pct(nt, 99)
	res.AddedP50, res.AddedP90, res.AddedP99 = res.NginxP50-res.DirectP50, res.NginxP90-res.DirectP90, res.NginxP99-res.DirectP99
	res.PairedMedian = pct(diff, 50)

	c0 := n.cpu()
	if res.Throughput, err = measureThroughput(ctx, cfg, target{url: x.url, body: body}); err != nil {
		return nil, fmt.Errorf("nginx throughput: %w", err)
	}
	// The warm-up requests ran inside the CPU window too.
	if reqs := res.Throughput.Requests + max(cfg.Concurrency, cfg.Warmup/4); reqs > 0 {
		res.CPUPerReqUS = float64((n.cpu() - c0).Microseconds()) / float64(reqs)
	}
	c0 = n.cpu()
	var bad int
	if res.SSEChunks, res.SSESeconds, res.SSECPU, bad, err = measureSSE(ctx, cfg, x.url); err != nil {
		return nil, fmt.Errorf("nginx SSE: %w", err)
	}
	if bad > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d streams through nginx ended without [DONE]", bad))
	}
	res.SSERate = float64(res.SSEChunks) / res.SSESeconds
	res.CPUPerChunkU = float64((n.cpu() - c0).Microseconds()) / float64(max(res.SSEChunks, 1))
	return res, nil
}

// Markdown writes part 7's table next to the proxy's numbers.
func (n *NginxResult) Markdown(w io.Writer, r *Report) {
	fmt.Fprintf(w, "Pass-through floor: %s (%d workers, generated config: keep-alive upstream, no buffering) in front of the same plaintext sandbox, with the same client and request.\n\n", n.Version, n.Workers)
	fmt.Fprintln(w, "| measurement | direct (plaintext sandbox) | through nginx | nginx adds | the proxy adds (same run) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	var pl Latency
	if r.Latency != nil {
		pl = *r.Latency
	}
	fmt.Fprintf(w, "| latency p50, c=1, %d requests | %.3f ms | %.3f ms | +%.3f ms | +%.3f ms |\n", n.Requests, n.DirectP50, n.NginxP50, n.AddedP50, pl.AddedP50)
	fmt.Fprintf(w, "| latency p90 | %.3f ms | %.3f ms | +%.3f ms | +%.3f ms |\n", n.DirectP90, n.NginxP90, n.AddedP90, pl.AddedP90)
	fmt.Fprintf(w, "| latency p99 | %.3f ms | %.3f ms | +%.3f ms | +%.3f ms |\n", n.DirectP99, n.NginxP99, n.AddedP99, pl.AddedP99)
	fmt.Fprintf(w, "| latency, median of paired differences | | | +%.3f ms | +%.3f ms |\n", n.PairedMedian, pl.PairedMedian)
	if t := r.Throughput; t != nil {
		fmt.Fprintf(w, "| throughput, c=%d | %.0f req/s | %.0f req/s (CPU %.0f%%) | %.0f%% of direct | proxy: %.0f%% of direct |\n",
			t.Concurrency, t.Direct.PerSecond, n.Throughput.PerSecond, n.Throughput.ProcessCPU, 100*n.Throughput.PerSecond/max(t.Direct.PerSecond, 1), 100*t.Ratio)
	}
	cpuNote := "`serve` child: see the CPU row above"
	if r.CPU != nil {
		cpuNote = fmt.Sprintf("`serve` child: %.0f µs (c=%d)", r.CPU.MicrosPerReq, r.CPU.Concurrency)
	}
	fmt.Fprintf(w, "| CPU per unary request of the hop itself | | %.0f µs (nginx processes, c=%d) | | %s |\n", n.CPUPerReqUS, r.concurrency(), cpuNote)
	if s := r.SSE; s != nil {
		fmt.Fprintf(w, "| SSE, %d streams × %d tokens | %.0f chunks/s | %.0f chunks/s | %.0f%% of direct | proxy: %.0f chunks/s |\n",
			s.Streams, s.TokensEach, s.DirectRate, n.SSERate, 100*n.SSERate/max(s.DirectRate, 1), s.ProxyRate)
	}
	fmt.Fprintf(w, "| nginx CPU per SSE chunk | | %.2f µs | | |\n", n.CPUPerChunkU)
}

// concurrency is the throughput part's client count (0 if it did not run).
func (r *Report) concurrency() int {
	if r.Throughput == nil {
		return 0
	}
	return r.Throughput.Concurrency
}
