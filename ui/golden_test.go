package ui

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// observeFixedTraffic records the same requests every run, with fixed
// durations, so histograms are deterministic.
func observeFixedTraffic(in *Instruments) {
	p, g := in.Proxy(), in.Gateway()
	p.ObserveRequest("/v1/chat/completions", 200, 40*time.Millisecond, 300*time.Microsecond)
	p.ObserveRequest("/v1/chat/completions", 200, 2*time.Second, 400*time.Microsecond)
	p.ObserveRequest("/v1/chat/completions", 502, 8*time.Millisecond, 200*time.Microsecond)
	p.ObserveRequest("/v1/models", 200, 3*time.Millisecond, 50*time.Microsecond)
	p.StreamStarted("/v1/chat/completions")
	g.ObserveRequest("code_completions", "", 200, 120*time.Millisecond)
	g.ObserveRequest("prompts", "model_configuration/check", 200, 900*time.Millisecond)
	g.ObserveRequest("unknown", "", 401, time.Millisecond)
	g.StreamStarted("chat_agent")
}

// normalise replaces what differs between runs: generated key ids and
// the key creation time's sub-second part.
var kidPattern = regexp.MustCompile(`"id": "[A-Za-z0-9_-]{43}"`)

func TestAPIStatusGolden(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	observeFixedTraffic(f.in)
	r := f.do(f.client(), http.MethodGet, "/api/status", nil, "Authorization", "Bearer "+testToken)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/status: %d %v", r.status, r.header)
	}
	testutil.Golden(t, "testdata/status.json", []byte(kidPattern.ReplaceAllString(r.body, `"id": "<kid>"`)))
}

func TestMetricsGolden(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	observeFixedTraffic(f.in)
	r := f.do(f.client(), http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+testToken)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", r.status)
	}
	testutil.Golden(t, "testdata/metrics.txt", []byte(r.body))
	// Every state metric the collector describes is documented.
	for _, m := range metricHelp {
		if !strings.Contains(readme(t), "`"+m.name+"`") {
			t.Errorf("README.md does not document %s", m.name)
		}
	}
}
