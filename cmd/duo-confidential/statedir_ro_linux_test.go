package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
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

// TestServeReadOnlyStateDir starts serve on a read-only state directory:
// start-up fails at once with an error naming the directory, with the
// local CA (which must write its root) and without TLS alike (the trust
// log, keys and certificates need it; the appliance checks at start).
// appliance's TestTrustLogWriteFailureFailsClosed covers a directory that
// turns read-only while serving.
func TestServeReadOnlyStateDir(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t)
	cfg := writeTemp(t, "config.yaml", "")
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"local CA", nil},
		{"no TLS", []string{"DUO_CONFIDENTIAL_TLS_SOURCE=off"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			state := readOnlyDir(t)
			env := append([]string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, c.env...)
			p := startProc(t, env, "--config", cfg, "serve", "--sandbox", dir, "--listen", freeAddr(t))
			if code := p.wait(t); code == 0 {
				t.Errorf("serve exited 0 on a read-only state directory")
			}
			if msg := p.stderr.String(); !strings.Contains(msg, state) || !strings.Contains(msg, "read-only file system") && !strings.Contains(msg, "permission denied") {
				t.Errorf("the start-up error does not name the directory and the cause:\n%s", msg)
			}
		})
	}
}
