package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a fake systemd notification socket collecting what the
// service sends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, strings.Split(strings.TrimSpace(string(buf[:n])), "\n")...)
			s.mu.Unlock()
		}
	}()
	return s
}

// count returns how many messages equal msg (or start with it, for a
// prefix ending in "=").
func (s *notifySocket) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if m == msg || (strings.HasSuffix(msg, "=") && strings.HasPrefix(m, msg)) {
			n++
		}
	}
	return n
}

func (s *notifySocket) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// TestServeSystemdNotify runs serve as systemd would with Type=notify and
// WatchdogSec: READY=1 once listening, a STATUS= line, watchdog pings
// while the listener answers, RELOADING=1/READY=1 around SIGHUP and
// STOPPING=1 on SIGTERM.
func TestServeSystemdNotify(t *testing.T) {
	t.Parallel()
	sb := startSandboxProc(t)
	sock := newNotifySocket(t)
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir(), "NOTIFY_SOCKET=" + sock.path, "WATCHDOG_USEC=400000"}
	cfg := writeTemp(t, "config.yaml", "")
	p := startProc(t, env, "--config", cfg, "serve", "--sandbox", sb, "--listen", freeAddr(t), "--drain", "5s")
	p.waitUntil(t, "READY=1 and watchdog pings", func() bool {
		return sock.count("READY=1") == 1 && sock.count("WATCHDOG=1") >= 2 && sock.count("STATUS=") >= 1
	})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitUntil(t, "RELOADING=1 then READY=1", func() bool { return sock.count("RELOADING=1") == 1 && sock.count("READY=1") == 2 })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr.String())
	}
	if sock.count("STOPPING=1") != 1 {
		t.Errorf("no STOPPING=1; got %q", sock.all())
	}
	msgs := sock.all()
	if msgs[0] != "READY=1" {
		t.Errorf("first message %q, want READY=1 (nothing before the listeners serve)", msgs[0])
	}
	for _, m := range msgs {
		if strings.HasPrefix(m, "STATUS=") && !strings.HasPrefix(m, "STATUS=ready") && !strings.HasPrefix(m, "STATUS=not ready: ") {
			t.Errorf("status %q", m)
		}
	}
}

// TestSelfProbe: the watchdog's liveness check fails for a listener that
// accepts nothing, and for one that answers without 200.
func TestSelfProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := selfProbe(addr, false, time.Second)(t.Context()); err == nil {
		t.Error("a closed port passed the probe")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("probed %s", r.URL.Path)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if err := selfProbe("0.0.0.0:"+port, false, time.Second)(t.Context()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a 503 passed the probe: %v", err)
	}
}
