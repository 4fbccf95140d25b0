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

// TestGatewayPartTiny runs the gateway part alone with tiny counts: it
// proves the part works end to end (appliance with gateway, demo GitLab
// over TLS, twin capture, both paths), not performance.
func TestGatewayPartTiny(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	args := []string{
		"-parts", "gateway", "--warmup", "3", "--requests", "15", "--concurrency", "4",
		"--throughput-duration", "200ms", "--throughput-max", "100", "--token-pool", "8",
		"--json", jsonPath, "--timeout", "60s",
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	md := out.String()
	for _, want := range []string{"gateway latency p50", "gateway throughput, c=4", "median of paired differences", "CPU per request at c=4", "Tokens: "} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "through the proxy (encrypted sandbox)") {
		t.Errorf("-parts gateway printed the proxy table:\n%s", md)
	}
	var rep Report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Latency != nil || rep.Memory != nil {
		t.Errorf("-parts gateway ran other parts: %+v %+v", rep.Latency, rep.Memory)
	}
	g := rep.Gateway
	if g == nil {
		t.Fatal("no gateway result")
	}
	if g.Route != routeCompletions && g.Route != routeCommitMessage {
		t.Errorf("route %q", g.Route)
	}
	if g.ModelPath != "/v1/chat/completions" || g.ModelBodyBytes < 1000 || g.RequestBytes < 1000 {
		t.Errorf("model request: %s, %d B; gateway request %d B", g.ModelPath, g.ModelBodyBytes, g.RequestBytes)
	}
	l := g.Latency
	if l.Requests != 15 || l.DirectP50 <= 0 || l.GatewayP50 <= 0 || l.GatewayP99 < l.GatewayP50 || l.DirectP99 < l.DirectP50 {
		t.Errorf("latency: %+v", l)
	}
	tp := g.Throughput
	if tp.Concurrency != 4 || tp.TokenPool != 8 || tp.Direct.Requests == 0 || tp.Gateway.Requests == 0 ||
		tp.Direct.Errors+tp.Gateway.Errors > 0 || tp.Ratio <= 0 {
		t.Errorf("throughput: %+v", tp)
	}
}

// TestGatewayCaptureMatches checks the premise of the comparison: the body
// the twin records is the one the appliance's gateway sends the proxy.
// Both reach the encrypted backend, where only ciphertext is visible; the
// proxy's field encryption keeps length differences, so the gateway's
// request and the direct one must arrive the same size (and a body one
// byte longer must not).
func TestGatewayCaptureMatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := startGatewayRig(ctx, gwRigOptions{format: "chat", recordBackend: 8}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for _, route := range []string{routeCompletions, routeCommitMessage} {
		t.Run(strings.TrimPrefix(route, "/"), func(t *testing.T) {
			gr := requestFor(route)
			code, gwAnswer, err := gr.send(ctx, r.gateway, r.iss)
			if err != nil {
				t.Fatal(err)
			}
			if code == http.StatusNotImplemented {
				t.Skipf("%s is not implemented in this build", route)
			}
			if code != http.StatusOK {
				t.Fatalf("gateway: HTTP %d: %s", code, gwAnswer)
			}
			recs := r.encSB.Requests()
			viaGateway := recs[len(recs)-1]
			capt, err := captureModelRequest(ctx, r, gr)
			if err != nil {
				t.Fatal(err)
			}
			tr := newTransport(1)
			defer tr.CloseIdleConnections()
			c := &client{tr: tr, target: target{url: r.proxy + capt.path, body: capt.body, header: func() http.Header { return capt.header }}}
			if err := c.do(ctx); err != nil {
				t.Fatal(err)
			}
			recs = r.encSB.Requests()
			direct := recs[len(recs)-1]
			if direct.Seq != viaGateway.Seq+1 {
				t.Fatalf("backend saw %d requests in between", direct.Seq-viaGateway.Seq-1)
			}
			if direct.Path != viaGateway.Path || len(direct.Body) != len(viaGateway.Body) {
				t.Errorf("at the backend: gateway's request %s %d B, direct %s %d B", viaGateway.Path, len(viaGateway.Body), direct.Path, len(direct.Body))
			}
			// The comparison can fail: one more byte of content shows.
			longer := bytes.Replace(capt.body, []byte(`"content":"`), []byte(`"content":"x`), 1)
			c.body = longer
			if err := c.do(ctx); err != nil {
				t.Fatal(err)
			}
			recs = r.encSB.Requests()
			if n := len(recs[len(recs)-1].Body); n == len(viaGateway.Body) {
				t.Errorf("a body one byte longer arrived as %d B too", n)
			}
			if err := gr.check(gwAnswer); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPartsFlag(t *testing.T) {
	var errb bytes.Buffer
	c, err := parseFlags(nil, &errb)
	if err != nil || !c.part("proxy") || !c.part("child") || c.part("gateway") {
		t.Errorf("default parts %v %v", c.Parts, err)
	}
	c, err = parseFlags([]string{"-parts", "gateway,proxy", "-child=false"}, &errb)
	if err != nil || !c.part("gateway") || !c.part("proxy") || c.part("child") {
		t.Errorf("parts %v %v", c.Parts, err)
	}
	if _, err := parseFlags([]string{"-parts", "proxy,gpu"}, &errb); err == nil {
		t.Error("accepted -parts proxy,gpu")
	}
	if _, err := parseFlags([]string{"-gateway-route", "/v1/x"}, &errb); err == nil {
		t.Error("accepted -gateway-route /v1/x")
	}
}
