package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeShutdownDelay: with --shutdown-delay, SIGTERM first turns
// /readyz into 503 "shutting down" while the listener still accepts and
// answers new requests; then serve drains and exits 0.
func TestServeShutdownDelay(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t)
	serve, base := startServeProc(t, dir, "--shutdown-delay", "3s")
	if err := serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Each probe on a new connection, as a load balancer's health check.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var reason string
	serve.waitUntil(t, "/readyz to answer 503 shutting down", func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz after SIGTERM: %v (the listener closed before readiness failed)", err)
		}
		defer resp.Body.Close()
		var r struct {
			Ready  bool   `json:"ready"`
			Reason string `json:"reason"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		reason = r.Reason
		return resp.StatusCode == http.StatusServiceUnavailable && !r.Ready
	})
	if reason != "shutting down" {
		t.Errorf("readiness reason %q, want shutting down", reason)
	}
	// Still serving: a new connection gets a full answer.
	if got := chatOnce(t, base, "still here"); !strings.HasPrefix(got, "Sandbox reply to: still here") {
		t.Errorf("a request while not ready but before the drain: %q", got)
	}
	if code := serve.wait(t); code != 0 {
		t.Errorf("serve exited %d\n%s", code, serve.stderr.String())
	}
	logs := serve.stderr.String()
	if i, j := strings.Index(logs, "reporting not ready"), strings.Index(logs, "draining in-flight"); i < 0 || j < i {
		t.Errorf("want the not-ready phase logged before the drain:\n%s", logs)
	}
}
