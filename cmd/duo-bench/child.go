package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Memory is part 4's result (MiB of the serve child's VmRSS).
type Memory struct {
	IdleMiB     float64          `json:"idle_rss_mib"`
	AfterCPUMiB float64          `json:"after_cpu_batch_rss_mib"`
	Streams     []StreamsReading `json:"open_streams"`
	PeakMiB     float64          `json:"peak_rss_mib"` // VmHWM at the end
}

// StreamsReading is the RSS with n streams open.
type StreamsReading struct {
	Open   int     `json:"open"`
	RSSMiB float64 `json:"rss_mib"`
}

// CPU is part 5's result.
type CPU struct {
	Requests       int     `json:"requests"`
	Concurrency    int     `json:"concurrency"`
	Seconds        float64 `json:"seconds"`
	ServeCPUSecs   float64 `json:"serve_cpu_seconds"`
	MicrosPerReq   float64 `json:"serve_cpu_us_per_request"`
	SandboxCPUSecs float64 `json:"sandbox_cpu_seconds"`
}

// childProc is a started duo-confidential child.
type childProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	tail *tailBuf
}

// stop asks the child to drain and exit, and kills it if it does not.
func (c *childProc) stop() {
	if c == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// tailBuf keeps the last bytes a child logged, for error messages.
type tailBuf struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuf) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}

func (t *tailBuf) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// start runs bin with args and env added to this process's environment;
// lines of its stdout and stderr go to watch (until watch returns true)
// and the tail buffer.
func start(bin string, args, env []string, watch func(line string) bool) (*childProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "GOGC=", "GOMEMLIMIT="), env...) // the service's defaults
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	tail := &tailBuf{}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childProc{cmd: cmd, done: make(chan struct{}), tail: tail}
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		watching := true
		for sc.Scan() {
			line := sc.Text()
			_, _ = tail.Write([]byte(line + "\n"))
			if watching && watch != nil && watch(line) {
				watching = false
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return c, nil
}

// buildBinary builds cmd/duo-confidential into dir.
func buildBinary(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the duo-confidential module; pass --bin")
	}
	bin := filepath.Join(dir, "duo-confidential")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/duo-confidential")
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	return bin, nil
}

// childResults runs parts 4 and 5 against `sandbox` and `serve` children.
func childResults(ctx context.Context, cfg Config, logf func(string, ...any)) (*Memory, *CPU, error) {
	raiseNoFile()
	tmp, err := os.MkdirTemp("", "duo-bench-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	bin := cfg.Bin
	if bin == "" {
		t0 := time.Now()
		if bin, err = buildBinary(ctx, tmp); err != nil {
			return nil, nil, err
		}
		logf("built duo-confidential in %v", time.Since(t0).Round(time.Millisecond))
	}
	sb, srv, base, err := startChildren(ctx, bin, tmp, "")
	if err != nil {
		return nil, nil, err
	}
	defer sb.stop()
	defer srv.stop()
	logf("serve child ready; measuring idle RSS")
	pid := srv.cmd.Process.Pid
	mem := &Memory{}
	sleepCtx(ctx, cfg.Settle)
	if mem.IdleMiB, err = rssMiB(pid, "VmRSS"); err != nil {
		return nil, nil, err
	}

	// Part 5: CPU per unary request.
	cpu := &CPU{Requests: cfg.CPURequests, Concurrency: 4}
	body := chatBody(cfg.ReplyTokens, false)
	tr := newTransport(cpu.Concurrency)
	url := base + "/v1/chat/completions"
	if err := load(ctx, tr, target{url: url, body: body}, cpu.Concurrency, max(50, cfg.Warmup), time.Minute, nil); err != nil {
		return nil, nil, fmt.Errorf("CPU warm-up: %w", err)
	}
	s0, err := cpuTicks(pid)
	if err != nil {
		return nil, nil, err
	}
	b0, _ := cpuTicks(sb.cmd.Process.Pid)
	t1 := time.Now()
	if err := load(ctx, tr, target{url: url, body: body}, cpu.Concurrency, cfg.CPURequests, 2*time.Minute, nil); err != nil {
		return nil, nil, fmt.Errorf("CPU batch: %w", err)
	}
	cpu.Seconds = time.Since(t1).Seconds()
	s1, err := cpuTicks(pid)
	if err != nil {
		return nil, nil, err
	}
	b1, _ := cpuTicks(sb.cmd.Process.Pid)
	tr.CloseIdleConnections()
	cpu.ServeCPUSecs = (s1 - s0).Seconds()
	cpu.SandboxCPUSecs = (b1 - b0).Seconds()
	cpu.MicrosPerReq = float64((s1 - s0).Microseconds()) / float64(cfg.CPURequests)
	logf("CPU batch: %d requests in %.1fs, serve %.2fs CPU", cfg.CPURequests, cpu.Seconds, cpu.ServeCPUSecs)
	sleepCtx(ctx, cfg.Settle)
	if mem.AfterCPUMiB, err = rssMiB(pid, "VmRSS"); err != nil {
		return nil, nil, err
	}

	// Part 4: open streams, held open by the slow sandbox.
	str := &http.Transport{
		DisableCompression: true, MaxIdleConnsPerHost: 1, ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	defer str.CloseIdleConnections()
	sctx, stopStreams := context.WithCancel(ctx)
	var held sync.WaitGroup
	defer func() { stopStreams(); held.Wait() }()
	streamBody := chatBody(60000, true) // 2 tokens/s: open for hours unless cancelled
	open := 0
	for _, n := range cfg.OpenStreams {
		if n <= open {
			continue
		}
		if err := openStreams(sctx, str, url, streamBody, n-open, &held); err != nil {
			return nil, nil, fmt.Errorf("opening %d streams: %w", n, err)
		}
		open = n
		sleepCtx(ctx, cfg.Settle)
		rss, err := rssMiB(pid, "VmRSS")
		if err != nil {
			return nil, nil, err
		}
		logf("%d open streams: serve RSS %.1f MiB", n, rss)
		mem.Streams = append(mem.Streams, StreamsReading{Open: n, RSSMiB: rss})
	}
	mem.PeakMiB, _ = rssMiB(pid, "VmHWM")
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	return mem, cpu, nil
}

// openStreams starts n streams, each read in its own goroutine until ctx
// ends, and returns once every one has delivered its first event.
func openStreams(ctx context.Context, tr *http.Transport, url string, body []byte, n int, held *sync.WaitGroup) error {
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sem := make(chan struct{}, 32) // connection setups in flight
	errc := make(chan error, n)
	for range n {
		select {
		case sem <- struct{}{}:
		case <-octx.Done():
			return octx.Err()
		}
		held.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				<-sem
				errc <- err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				<-sem
				errc <- err
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 4<<10)
			first := true
			for {
				line, err := br.ReadSlice('\n')
				if first && bytes.HasPrefix(line, []byte("data:")) {
					first = false
					<-sem
					errc <- nil
				}
				if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
					if first {
						<-sem
						errc <- fmt.Errorf("stream ended before its first event (HTTP %d): %w", resp.StatusCode, err)
					}
					return
				}
			}
		})
	}
	for range n {
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
		case <-octx.Done():
			return octx.Err()
		}
	}
	return nil
}

func waitChan(ctx context.Context, ch <-chan struct{}, c *childProc, limit time.Duration) error {
	select {
	case <-ch:
		return nil
	case <-c.done:
		return errors.New("exited early")
	case <-time.After(limit):
		return errors.New("not up in time")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitReady polls /readyz until the proxy has attested and exchanged.
func waitReady(ctx context.Context, base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not ready: %s", b)
			}
		} else if time.Now().After(deadline) {
			return err
		}
		if !sleepCtx(ctx, 25*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// rssMiB reads a Vm* field of /proc/pid/status in MiB.
func rssMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status %s: %q", pid, field, v)
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTicks reads utime+stime of /proc/pid/stat.
func cpuTicks(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it follow ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// raiseNoFile raises this process's open-file soft limit to its hard limit;
// children inherit it (1,000 streams need about 2,000 descriptors in the
// proxy and 1,000 each here and in the sandbox).
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// startChildren starts a slow `sandbox` child and a `serve` child in front
// of it (plain HTTP, every listener on a free port, extraYAML appended to
// its configuration) and waits until serve is ready. The caller stops both.
func startChildren(ctx context.Context, bin, tmp, extraYAML string) (sb, srv *childProc, base string, err error) {
	sbDir := filepath.Join(tmp, "sandbox")
	sbReady := make(chan struct{})
	sb, err = start(bin, []string{"sandbox", "--listen", "127.0.0.1:0", "--out", sbDir, "--tokens-per-second", "2", "--log-level", "warn"}, nil,
		func(line string) bool {
			if strings.HasPrefix(line, "listening on http://") {
				close(sbReady)
				return true
			}
			return false
		})
	if err != nil {
		return nil, nil, "", fmt.Errorf("start sandbox: %w", err)
	}
	if err := waitChan(ctx, sbReady, sb, 30*time.Second); err != nil {
		sb.stop()
		return nil, nil, "", fmt.Errorf("sandbox child: %w\n%s", err, sb.tail)
	}
	state := filepath.Join(tmp, "state")
	conf := filepath.Join(tmp, "config.yaml")
	// Every listener on a free port: the default admin port may be taken
	// (a running appliance, another test).
	yaml := "state_dir: " + state + "\ntls:\n  source: off\nadmin:\n  listen: 127.0.0.1:0\n" + extraYAML
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		sb.stop()
		return nil, nil, "", err
	}
	var addr atomic.Value
	srvUp := make(chan struct{})
	srv, err = start(bin, []string{"serve", "--config", conf, "--sandbox", sbDir, "--listen", "127.0.0.1:0", "--drain", "2s", "--log-format", "json", "--log-level", "info"}, nil,
		func(line string) bool {
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "proxy listening" && l.Addr != "" {
				addr.Store(l.Addr)
				close(srvUp)
				return true
			}
			return false
		})
	if err != nil {
		sb.stop()
		return nil, nil, "", fmt.Errorf("start serve: %w", err)
	}
	fail := func(err error) (*childProc, *childProc, string, error) {
		srv.stop()
		sb.stop()
		return nil, nil, "", fmt.Errorf("serve child: %w\n%s", err, srv.tail)
	}
	if err := waitChan(ctx, srvUp, srv, 30*time.Second); err != nil {
		return fail(err)
	}
	base = "http://" + addr.Load().(string)
	if err := waitReady(ctx, base, 30*time.Second); err != nil {
		return fail(err)
	}
	return sb, srv, base, nil
}
