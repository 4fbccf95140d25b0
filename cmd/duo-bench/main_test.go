package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHarnessTiny runs every part with tiny counts: it proves the harness
// works end to end (in-process rig, child processes), not performance.
func TestHarnessTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts child processes")
	}
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	args := []string{
		"--warmup", "5", "--requests", "20", "--concurrency", "4",
		"--throughput-duration", "200ms", "--throughput-max", "200",
		"--streams", "2", "--stream-tokens", "200", "--stream-duration", "300ms", "--stream-max", "6",
		"--open-streams", "1,5", "--cpu-requests", "20", "--settle", "50ms",
		"--json", jsonPath, "--timeout", "60s",
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	md := out.String()
	for _, want := range []string{"latency p50", "throughput, c=4", "SSE, 2 streams", "RSS idle", "5 open streams", "CPU per unary request", "go run ./cmd/duo-bench --warmup 5"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	var rep Report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Latency == nil || rep.Latency.Requests != 20 || rep.Latency.ProxyP50 <= 0 || rep.Latency.DirectP50 <= 0 {
		t.Errorf("latency: %+v", rep.Latency)
	}
	if rep.Latency != nil && (rep.Latency.BodyBytes < 3800 || rep.Latency.BodyBytes > 4400) {
		t.Errorf("chat body is %d bytes, want about 4 KB", rep.Latency.BodyBytes)
	}
	if tp := rep.Throughput; tp == nil || tp.Direct.Requests == 0 || tp.Proxy.Requests == 0 || tp.Direct.Errors+tp.Proxy.Errors > 0 {
		t.Errorf("throughput: %+v", tp)
	}
	if s := rep.SSE; s == nil || s.ProxyChunks == 0 || s.DirectChunks == 0 {
		t.Errorf("SSE: %+v", s)
	}
	if m := rep.Memory; m == nil || m.IdleMiB <= 0 || len(m.Streams) != 2 || m.Streams[1].Open != 5 {
		t.Errorf("memory: %+v", m)
	}
	if c := rep.CPU; c == nil || c.Requests != 20 {
		t.Errorf("CPU: %+v", c)
	}
}

func TestChatBodySize(t *testing.T) {
	b := chatBody(32, false)
	if len(b) < 3800 || len(b) > 4400 || !json.Valid(b) {
		t.Fatalf("chat body: %d bytes, valid JSON %v", len(b), json.Valid(b))
	}
}

func TestFlags(t *testing.T) {
	var errb bytes.Buffer
	if _, err := parseFlags([]string{"--open-streams", "1,x"}, &errb); err == nil {
		t.Error("accepted --open-streams 1,x")
	}
	c, err := parseFlags([]string{"--open-streams", "2, 20"}, &errb)
	if err != nil || len(c.OpenStreams) != 2 || c.OpenStreams[1] != 20 {
		t.Errorf("got %v %v", c.OpenStreams, err)
	}
}

// TestStreamEventsNotHeldBack checks that the proxy relays each event when
// it arrives, not when the stream ends: with a sandbox pacing 20 tokens a
// second, the events must arrive spread over time.
func TestStreamEventsNotHeldBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := startRig(ctx, 20, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.proxied+"/v1/chat/completions", bytes.NewReader(chatBody(6, true)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var times []time.Time
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "data:") {
			times = append(times, time.Now())
		}
		if err != nil {
			break
		}
	}
	if len(times) < 8 { // 6 tokens, usage, [DONE]
		t.Fatalf("got %d events", len(times))
	}
	// Token i is sent at about i×50 ms: the first must not wait for the last.
	if spread := times[len(times)-1].Sub(times[0]); spread < 150*time.Millisecond {
		t.Errorf("events arrived within %v: the proxy held them back", spread)
	}
}
