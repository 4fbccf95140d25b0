package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// procLimit bounds every wait on a child process.
const procLimit = 30 * time.Second

// proc is a long-running child: the binary serving something.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr testutil.LogBuffer
	done           chan struct{}
	code           int
}

// startProc starts the binary with a clean DUO_CONFIDENTIAL_* environment
// plus env; the process is killed at the end of the test if still running.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: args[0], done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	// Parallel appliances must not all claim the admin UI's default port.
	p.cmd.Env = append(p.cmd.Env, config.EnvPrefix+"ADMIN_LISTEN=127.0.0.1:0")
	// ... nor the Agent Platform's (unless the test chose an address).
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, config.EnvPrefix+"AGENT_PLATFORM_LISTEN=") }) {
		p.cmd.Env = append(p.cmd.Env, config.EnvPrefix+"AGENT_PLATFORM_LISTEN=127.0.0.1:0")
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() {
		err := p.cmd.Wait()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			p.code = exit.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(procLimit):
		t.Fatalf("%s did not exit within %s\nstderr:\n%s", p.name, procLimit, p.stderr.String())
		return -1
	}
}

// waitUntil polls cond until it holds, the process exits, or procLimit.
func (p *proc) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(procLimit)
	for !cond() {
		if p.exited() {
			t.Fatalf("%s exited (status %d) before %s\nstdout:\n%s\nstderr:\n%s", p.name, p.code, what, p.stdout.String(), p.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\nstderr:\n%s", what, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address that was free a moment ago (the
// sandbox and serve commands take a fixed --listen address).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// startSandboxProc runs `sandbox --out DIR` and waits until it listens.
func startSandboxProc(t *testing.T, extra ...string) (dir string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "sandbox")
	args := append([]string{"sandbox", "--listen", freeAddr(t), "--out", dir}, extra...)
	p := startProc(t, nil, args...)
	p.waitUntil(t, "the sandbox to listen", func() bool { return strings.Contains(p.stdout.String(), "listening on http://") })
	if !strings.Contains(p.stdout.String(), "NOT CONFIDENTIAL") {
		t.Errorf("the sandbox does not say it is not confidential:\n%s", p.stdout.String())
	}
	return dir
}

// startServeProc runs `serve --sandbox DIR` on a free address with a
// temporary state directory and waits for /readyz to answer 200.
func startServeProc(t *testing.T, dir string, extra ...string) (*proc, string) {
	t.Helper()
	addr := freeAddr(t)
	cfg := writeTemp(t, "config.yaml", "")
	// Plain HTTP: these tests are about serving and draining; TLS is
	// covered by the gateway and tls tests.
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir(), "DUO_CONFIDENTIAL_TLS_SOURCE=off"}
	args := append([]string{"--config", cfg, "serve", "--sandbox", dir, "--listen", addr, "--drain", "20s"}, extra...)
	p := startProc(t, env, args...)
	base := "http://" + addr
	client := &http.Client{Timeout: 2 * time.Second}
	p.waitUntil(t, "serve to be ready", func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	client.CloseIdleConnections()
	return p, base
}

func chatRequest(t *testing.T, ctx context.Context, base, content string, stream bool, maxTokens int) *http.Response {
	t.Helper()
	b, _ := json.Marshal(map[string]any{
		"model":      sandbox.ModelChat,
		"messages":   []map[string]string{{"role": "user", "content": content}},
		"stream":     stream,
		"max_tokens": maxTokens,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	// A fresh connection per request: no keep-alive state across SIGTERM.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("chat request: %v", err)
	}
	return resp
}

// chatOnce sends a unary chat request and returns the reply text.
func chatOnce(t *testing.T, base, content string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procLimit)
	defer cancel()
	resp := chatRequest(t, ctx, base, content, false, 6)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: HTTP %d (%v): %s", resp.StatusCode, err, b)
	}
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("chat answer %s (%v)", b, err)
	}
	return c.Choices[0].Message.Content
}

// streamChunks reads an OpenAI event stream from r: the content deltas, and
// whether it ended with [DONE]. Error events fail the test.
func streamChunks(t *testing.T, r *bufio.Reader) (contents []string, done bool) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			if d == "[DONE]" {
				done = true
				continue
			}
			var ch struct {
				Error   json.RawMessage `json:"error"`
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if json.Unmarshal([]byte(d), &ch) != nil || ch.Error != nil {
				t.Fatalf("stream event %s", d)
			}
			if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
				contents = append(contents, ch.Choices[0].Delta.Content)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reading the stream: %v", err)
			}
			return contents, done
		}
	}
}

// TestServeSandboxDrain runs the real binary: a sandbox, then `serve
// --sandbox`; answers unary and streamed chat; on SIGTERM it refuses new
// connections, completes the in-flight stream and exits 0.
func TestServeSandboxDrain(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t, "--tokens-per-second", "20")
	serve, base := startServeProc(t, dir)
	if !strings.Contains(serve.stderr.String(), "SANDBOX MODE") {
		t.Errorf("serve does not warn about sandbox mode:\n%s", serve.stderr.String())
	}

	if got := chatOnce(t, base, "Hello binary"); !strings.HasPrefix(got, "Sandbox reply to: Hello binary") {
		t.Errorf("chat reply %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), procLimit)
	defer cancel()
	resp := chatRequest(t, ctx, base, "short stream", true, 4)
	contents, done := streamChunks(t, bufio.NewReader(resp.Body))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !done || len(contents) != 4 {
		t.Fatalf("stream: HTTP %d, %d chunks, [DONE] %v", resp.StatusCode, len(contents), done)
	}

	// A slow stream (40 tokens at 20 per second) is in flight when serve
	// gets SIGTERM.
	resp = chatRequest(t, ctx, base, "drain me", true, 40)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("slow stream: HTTP %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("first line of the slow stream %q: %v", first, err)
	}
	if err := serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the signal is handled, while the
	// stream is still draining.
	deadline := time.Now().Add(procLimit)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		// A connection still in the listen backlog when the listener
		// closes is reset: it was never served either, but keep polling
		// for a clean refusal.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial after SIGTERM: %v, want connection refused", err)
		}
		if c != nil {
			_ = c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("serve still accepts connections after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	contents, done = streamChunks(t, bufio.NewReader(io.MultiReader(strings.NewReader(first), br)))
	if !done || len(contents) != 40 {
		t.Errorf("the in-flight stream did not complete: %d of 40 chunks, [DONE] %v", len(contents), done)
	}
	if code := serve.wait(t); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0\nstderr:\n%s", code, serve.stderr.String())
	}
	if !strings.Contains(serve.stderr.String(), "draining") {
		t.Errorf("serve did not log the drain:\n%s", serve.stderr.String())
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("a connection was accepted after serve exited")
	}
}

const fixedSecretJSON = `{"id":"interop-fixed-secret","key":"4242424242424242424242424242424242424242424242424242424242424242"}`

// TestServeFixedSecretRefusedOutsideSandbox: --fixed-secret skips
// attestation, so serve refuses it without --sandbox.
func TestServeFixedSecretRefusedOutsideSandbox(t *testing.T) {
	t.Parallel()
	secret := writeTemp(t, "secret.json", fixedSecretJSON)
	cfg := writeTemp(t, "config.yaml", "")
	r := runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir()}, "--config", cfg, "serve", "--fixed-secret", secret, "--listen", freeAddr(t))
	r.want(t, 1, nil, []string{"--fixed-secret", "refused outside sandbox mode (--sandbox DIR)"})
}

// TestServeFixedSecretInterop runs sandbox and serve with the same fixed
// secret: no attestation or exchange, and requests are served.
func TestServeFixedSecretInterop(t *testing.T) {
	t.Parallel()
	secret := writeTemp(t, "secret.json", fixedSecretJSON)
	dir := startSandboxProc(t, "--fixed-secret", secret)
	serve, base := startServeProc(t, dir, "--fixed-secret", secret)
	if got := chatOnce(t, base, "interop request"); !strings.HasPrefix(got, "Sandbox reply to: interop request") {
		t.Errorf("chat reply %q", got)
	}
	if logs := serve.stderr.String(); strings.Contains(logs, "backend attested") || strings.Contains(logs, "inference secret installed") {
		t.Errorf("serve attested or exchanged despite the fixed secret:\n%s", logs)
	}
	if err := serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := serve.wait(t); code != 0 {
		t.Errorf("serve exited %d, want 0\nstderr:\n%s", code, serve.stderr.String())
	}
}
