package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readOnlyDir returns a new directory that cannot be written: mode 0500
// for an ordinary user; root ignores modes, so for root a read-only bind
// mount of the directory onto itself (undone when the test ends). The
// test is skipped if neither is possible.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	} else {
		if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
			t.Skipf("root cannot bind-mount here (%v): no way to make a read-only directory", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		})
		if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Skipf("cannot remount %s read-only: %v", dir, err)
		}
	}
	if f, err := os.CreateTemp(dir, "probe-"); err == nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		t.Skipf("%s is still writable", dir)
	}
	return dir
}

// TestServeReadOnlyStateDir starts serve on a read-only state directory.
// With the local CA (the default certificate source) start-up fails at
// once with an error naming the directory. Without TLS nothing needs
// writing at start, so serve runs but fails closed: no attestation can be
// recorded in the trust log, so it is never ready, says why (naming the
// trust log), and refuses requests.
func TestServeReadOnlyStateDir(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t)
	cfg := writeTemp(t, "config.yaml", "")

	t.Run("local CA", func(t *testing.T) {
		t.Parallel()
		state := readOnlyDir(t)
		p := startProc(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, "--config", cfg, "serve", "--sandbox", dir, "--listen", freeAddr(t))
		if code := p.wait(t); code == 0 {
			t.Errorf("serve exited 0 on a read-only state directory")
		}
		if msg := p.stderr.String(); !strings.Contains(msg, state) || !strings.Contains(msg, "read-only file system") && !strings.Contains(msg, "permission denied") {
			t.Errorf("the start-up error does not name the directory and the cause:\n%s", msg)
		}
	})

	t.Run("no TLS", func(t *testing.T) {
		t.Parallel()
		state := readOnlyDir(t)
		addr := freeAddr(t)
		p := startProc(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state, "DUO_CONFIDENTIAL_TLS_SOURCE=off"},
			"--config", cfg, "serve", "--sandbox", dir, "--listen", addr, "--drain", "5s")
		client := &http.Client{Timeout: 5 * time.Second}
		trustLog := filepath.Join(state, "trust-log.jsonl")
		var reason string
		p.waitUntil(t, "a readiness reason naming the trust log", func() bool {
			resp, err := client.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var rz struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason"`
			}
			if json.NewDecoder(resp.Body).Decode(&rz) != nil || rz.Ready || resp.StatusCode != http.StatusServiceUnavailable {
				return false
			}
			reason = rz.Reason
			return strings.Contains(reason, trustLog)
		})
		if !strings.Contains(reason, "trust log") {
			t.Errorf("readiness reason %q", reason)
		}
		resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"sandbox-chat","messages":[{"role":"user","content":"x"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "not available") {
			t.Errorf("chat on an unrecordable trust state: HTTP %d %s", resp.StatusCode, b)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 0 {
			t.Errorf("serve exited %d", code)
		}
	})
}
