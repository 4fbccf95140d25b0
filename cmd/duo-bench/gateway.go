package main

// The gateway part (issue 4): the GitLab AI Gateway's own cost — token
// validation, request parsing, prompt building, the model client and the
// in-memory hop to the proxy — measured as the latency it adds over
// calling the proxy directly with the very request the gateway sends it.

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway"
	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/jwks"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// Target of issue 4 for the gateway's added latency.
const targetGatewayAddedP50 = 0.5 // ms

// Gateway routes the part can drive.
const (
	routeCompletions   = "/v2/code/completions"
	routeCommitMessage = "/v1/prompts/generate_commit_message"
)

// commitMessageScope is the unit primitive of generate_commit_message; it
// is not among gitlabtest.DefaultScopes.
const commitMessageScope = "generate_commit_message"

// GatewayResult is the gateway part's result (milliseconds).
type GatewayResult struct {
	// Route is the gateway route measured; RouteNote says why, when it is
	// not the code completion route.
	Route     string `json:"route"`
	RouteNote string `json:"route_note,omitempty"`
	// CompletionFormat is gateway.completion_format; ModelPath the proxy
	// route the gateway calls, which the direct path calls too.
	CompletionFormat string `json:"completion_format"`
	ModelPath        string `json:"model_path"`
	// RequestBytes is the body sent to the gateway, ModelBodyBytes the
	// body the gateway sends the proxy (and the direct path sends).
	RequestBytes   int `json:"gateway_request_bytes"`
	ModelBodyBytes int `json:"model_request_bytes"`
	// Tokens says how the gateway requests were authenticated.
	Tokens     string            `json:"tokens"`
	Latency    GatewayLatency    `json:"latency"`
	Throughput GatewayThroughput `json:"throughput"`
}

// GatewayLatency is the c=1 comparison: direct = the proxy's own route,
// gateway = the gateway route in front of it.
type GatewayLatency struct {
	Requests     int     `json:"requests"`
	DirectP50    float64 `json:"direct_p50_ms"`
	DirectP90    float64 `json:"direct_p90_ms"`
	DirectP99    float64 `json:"direct_p99_ms"`
	GatewayP50   float64 `json:"gateway_p50_ms"`
	GatewayP90   float64 `json:"gateway_p90_ms"`
	GatewayP99   float64 `json:"gateway_p99_ms"`
	AddedP50     float64 `json:"added_p50_ms"`
	AddedP90     float64 `json:"added_p90_ms"`
	AddedP99     float64 `json:"added_p99_ms"`
	PairedMedian float64 `json:"paired_median_added_ms"`
}

// GatewayThroughput is the comparison at cfg.Concurrency.
type GatewayThroughput struct {
	Concurrency int     `json:"concurrency"`
	TokenPool   int     `json:"token_pool"`
	Direct      Rate    `json:"direct"`
	Gateway     Rate    `json:"gateway"`
	Ratio       float64 `json:"ratio"`
}

// gwRig is the in-process setup of the gateway part: an encrypted sandbox,
// the real appliance in sandbox mode with the gateway enabled, a demo
// GitLab issuer over TLS, and a plaintext sandbox that records what a
// twin of the gateway sends (see captureModelRequest).
type gwRig struct {
	proxy, gateway string // base URLs
	iss            *gitlabtest.Issuer
	cfg            *config.Config
	encSB          *sandbox.Server
	recorder       *sandbox.Server // plaintext, records requests
	recorderURL    string
	close          func()
}

// gwRigOptions are the knobs tests need.
type gwRigOptions struct {
	format string // gateway.completion_format
	// recordBackend makes the encrypted sandbox keep its last requests
	// (tests compare the gateway's with the direct one); 0 disables it,
	// as recording costs a body copy per request.
	recordBackend int
}

// startGatewayRig starts everything and waits for GatewayReady: backend
// attested, secret agreed, GitLab's keys fetched, models checked.
func startGatewayRig(ctx context.Context, o gwRigOptions, logf func(string, ...any)) (*gwRig, error) {
	quiet := slog.New(slog.DiscardHandler)
	var closers []func()
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	fail := func(err error) (*gwRig, error) {
		closeAll()
		return nil, err
	}
	rec := -1
	if o.recordBackend > 0 {
		rec = o.recordBackend
	}
	encSB, encURL, err := serveSandbox(sandbox.Options{Logger: quiet, RecordSize: rec}, &closers)
	if err != nil {
		return fail(fmt.Errorf("encrypted sandbox: %w", err))
	}
	recorder, recURL, err := serveSandbox(sandbox.Options{Logger: quiet, Plaintext: true, RecordSize: 4}, &closers)
	if err != nil {
		return fail(fmt.Errorf("recording sandbox: %w", err))
	}
	trust, err := appliance.SandboxFor(encSB, encURL)
	if err != nil {
		return fail(err)
	}
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		return fail(err)
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	gitlab, err := gitlabtest.Serve(iss, iln)
	if err != nil {
		iln.Close()
		return fail(err)
	}
	closers = append(closers, func() { _ = gitlab.Close() })
	state, err := os.MkdirTemp("", "duo-bench-state-")
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = os.RemoveAll(state) })
	cfg := config.Default()
	cfg.StateDir = state
	// Plain HTTP, like the baseline it is compared with.
	cfg.TLS.Source = apptls.SourceOff
	cfg.Gateway.GitLabURL = gitlab.URL
	cfg.Gateway.Models = config.GatewayModels{Default: sandbox.ModelChat, CodeCompletions: sandbox.ModelCode, CodeGenerations: sandbox.ModelCode}
	cfg.Gateway.CompletionFormat = o.format
	a, err := appliance.New(appliance.Options{Config: cfg, Logger: quiet, Version: "duo-bench", Sandbox: trust,
		APIKey: sandboxAPIKey, GitLabClient: gitlab.Client})
	if err != nil {
		return fail(fmt.Errorf("appliance: %w", err))
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pln.Close()
		return fail(err)
	}
	start := time.Now()
	stop, err := runUntilReady(ctx, a, appliance.Listeners{Proxy: pln, Gateway: gln}, a.GatewayReady)
	closers = append(closers, stop)
	if err != nil {
		return fail(fmt.Errorf("the gateway did not become ready: %w", err))
	}
	logf("in-process gateway ready after %v (attestation, secret exchange, GitLab keys, model check)", time.Since(start).Round(time.Millisecond))
	return &gwRig{
		proxy: "http://" + pln.Addr().String(), gateway: "http://" + gln.Addr().String(),
		iss: iss, cfg: cfg, encSB: encSB, recorder: recorder, recorderURL: recURL, close: closeAll,
	}, nil
}

// completionBody is a code completion request as GitLab's IDE extensions
// send it through Rails: 2.6 KB of a Go file above the cursor and a short rest
// below, comparable to the proxy part's 4 KB chat body.
func completionBody() []byte {
	above := "package store\n\nimport (\n\t\"context\"\n\t\"errors\"\n\t\"sync\"\n\t\"time\"\n)\n\n" +
		"// ErrNotFound is returned by Get for a missing key.\nvar ErrNotFound = errors.New(\"store: not found\")\n\n" +
		"// Store is an in-memory key-value store with expiry.\ntype Store struct {\n\tmu    sync.RWMutex\n\titems map[string]item\n\tnow   func() time.Time\n}\n\n" +
		"type item struct {\n\tvalue   []byte\n\texpires time.Time\n}\n\n" +
		"// New returns an empty store.\nfunc New() *Store {\n\treturn &Store{items: make(map[string]item), now: time.Now}\n}\n\n" +
		"// Get returns a copy of the value of key.\nfunc (s *Store) Get(ctx context.Context, key string) ([]byte, error) {\n\tif err := ctx.Err(); err != nil {\n\t\treturn nil, err\n\t}\n" +
		"\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n\tit, ok := s.items[key]\n\tif !ok || (!it.expires.IsZero() && s.now().After(it.expires)) {\n\t\treturn nil, ErrNotFound\n\t}\n\treturn append([]byte(nil), it.value...), nil\n}\n\n" +
		"// Set stores a copy of value under key until ttl passes (0: forever).\nfunc (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {\n\tif err := ctx.Err(); err != nil {\n\t\treturn err\n\t}\n" +
		"\tit := item{value: append([]byte(nil), value...)}\n\tif ttl > 0 {\n\t\tit.expires = s.now().Add(ttl)\n\t}\n\ts.mu.Lock()\n\tdefer s.mu.Unlock()\n\ts.items[key] = it\n\treturn nil\n}\n\n" +
		"// Delete removes key; deleting a missing key is not an error.\nfunc (s *Store) Delete(ctx context.Context, key string) error {\n\tif err := ctx.Err(); err != nil {\n\t\treturn err\n\t}\n\ts.mu.Lock()\n\tdefer s.mu.Unlock()\n\tdelete(s.items, key)\n\treturn nil\n}\n\n" +
		"// Len counts the keys that have not expired.\nfunc (s *Store) Len() int {\n\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n\tn, now := 0, s.now()\n\tfor _, it := range s.items {\n\t\tif it.expires.IsZero() || now.Before(it.expires) {\n\t\t\tn++\n\t\t}\n\t}\n\treturn n\n}\n\n" +
		"// Keys returns the keys that have not expired, in no particular order.\nfunc (s *Store) Keys() []string {\n\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n\tnow := s.now()\n\tkeys := make([]string, 0, len(s.items))\n\tfor k, it := range s.items {\n\t\tif it.expires.IsZero() || now.Before(it.expires) {\n\t\t\tkeys = append(keys, k)\n\t\t}\n\t}\n\treturn keys\n}\n\n" +
		"// Purge removes expired items and reports how many it removed.\nfunc (s *Store) Purge() int {\n\ts.mu.Lock()\n\tdefer s.mu.Unlock()\n\tn, now := 0, s.now()\n\tfor k, it := range s.items {\n\t\tif !it.expires.IsZero() && !now.Before(it.expires) {\n\t\t\tdelete(s.items, k)\n\t\t\tn++\n\t\t}\n\t}\n\treturn n\n}\n\n" +
		"// Janitor purges expired items every interval until ctx ends.\nfunc (s *Store) Janitor(ctx context.Context, interval time.Duration) {\n\tt := time.NewTicker(interval)\n\tdefer t.Stop()\n\tfor {\n\t\tselect {\n\t\tcase <-ctx.Done():\n\t\t\treturn\n\t\tcase <-t.C:\n\t\t\t"
	below := "\n\t\t}\n\t}\n}\n\n// Snapshot copies every live item, for tests.\nfunc (s *Store) Snapshot() map[string][]byte {\n\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n\tout := make(map[string][]byte, len(s.items))\n\tfor k, it := range s.items {\n\t\tout[k] = append([]byte(nil), it.value...)\n\t}\n\treturn out\n}\n"
	b, _ := json.Marshal(map[string]any{
		"prompt_version": 1,
		"project_path":   "acme/store",
		"project_id":     42,
		"current_file": map[string]any{
			"file_name":            "store/store.go",
			"content_above_cursor": above,
			"content_below_cursor": below,
		},
	})
	return b
}

// commitMessageBody is a generate_commit_message prompt request: a
// ~3 KB diff, as Rails sends it.
func commitMessageBody() []byte {
	var d strings.Builder
	d.WriteString("diff --git a/store/store.go b/store/store.go\nindex 3b18e51..a9f0c2d 100644\n--- a/store/store.go\n+++ b/store/store.go\n")
	for i := range 12 {
		fmt.Fprintf(&d, "@@ -%d,7 +%d,9 @@ func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {\n", 10+i*20, 10+i*22)
		d.WriteString(" \ts.mu.RLock()\n \tdefer s.mu.RUnlock()\n-\tv, ok := s.items[key]\n+\tit, ok := s.items[key]\n+\tif ok && s.expired(it) {\n+\t\tok = false\n+\t}\n")
	}
	b, _ := json.Marshal(map[string]any{"inputs": map[string]any{"diff": d.String()}})
	return b
}

// gatewayRequest is one gateway route with its body and answer check.
type gatewayRequest struct {
	route  string
	body   []byte
	scopes []string // nil: gitlabtest.DefaultScopes
	check  func(body []byte) error
}

func requestFor(route string) gatewayRequest {
	if route == routeCommitMessage {
		return gatewayRequest{route: route, body: commitMessageBody(),
			scopes: append(slices.Clone(gitlabtest.DefaultScopes), commitMessageScope),
			check: func(b []byte) error {
				var s string
				if json.Unmarshal(b, &s) != nil || s == "" {
					return fmt.Errorf("not a non-empty JSON string: %.300s", b)
				}
				return nil
			}}
	}
	return gatewayRequest{route: routeCompletions, body: completionBody(), check: func(b []byte) error {
		var r struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if json.Unmarshal(b, &r) != nil || len(r.Choices) == 0 {
			return fmt.Errorf("no choices: %.300s", b)
		}
		return nil
	}}
}

// headers mints a fresh token, as GitLab does per request, and returns
// Rails' headers for it.
func (gr gatewayRequest) headers(iss *gitlabtest.Issuer) (http.Header, error) {
	o := gitlabtest.TokenOptions{Scopes: gr.scopes}
	tok, err := iss.Token(o)
	if err != nil {
		return nil, err
	}
	return iss.Headers(tok, o), nil
}

// send posts gr to the gateway once and returns the status and body.
func (gr gatewayRequest) send(ctx context.Context, base string, iss *gitlabtest.Issuer) (int, []byte, error) {
	h, err := gr.headers(iss)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+gr.route, bytes.NewReader(gr.body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), err
}

// pickRoute returns the code completion route unless it is not
// implemented in this build (501), then the commit-message prompt route.
func pickRoute(ctx context.Context, r *gwRig, want string) (gatewayRequest, string, error) {
	gr := requestFor(want)
	if want != "auto" {
		return gr, "", nil
	}
	code, body, err := gr.send(ctx, r.gateway, r.iss)
	if err != nil {
		return gr, "", err
	}
	if code != http.StatusNotImplemented {
		return gr, "", nil
	}
	note := fmt.Sprintf("%s answers 501 in this build (%.100s), so the part measures %s instead", routeCompletions, bytes.TrimSpace(body), routeCommitMessage)
	return requestFor(routeCommitMessage), note, nil
}

// staticKeys is a KeySource over the issuer's published keys, for the
// twin's validator (the real gateway fetches the same keys over TLS).
type staticKeys map[string]crypto.PublicKey

func (k staticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if p, ok := k[kid]; ok {
		return p, nil
	}
	return nil, errors.New("unknown kid")
}

func (k staticKeys) All() []crypto.PublicKey {
	out := make([]crypto.PublicKey, 0, len(k))
	for _, p := range k {
		out = append(out, p)
	}
	return out
}

// capturedRequest is the model request the gateway sends the proxy.
type capturedRequest struct {
	path   string
	body   []byte
	header http.Header // Accept and Content-Type, as the model client sends them
}

// captureModelRequest records the request the gateway sends the proxy for
// gr. The real gateway's request is encrypted by the proxy before anything
// outside can see it, so a twin records it: gateway.New with the same
// validator (gateway.NewAuth's auth.Validator over the issuer's keys), the
// same model configuration as appliance's wiring, and a real model.Client
// that dials a plaintext sandbox which records the request. The twin runs
// the same handler code on the same body, so the body is the one the
// appliance's gateway builds; a test (TestGatewayCaptureMatches) checks
// that both reach the backend with the same size.
func captureModelRequest(ctx context.Context, r *gwRig, gr gatewayRequest) (*capturedRequest, error) {
	g := r.cfg.Gateway
	keys := staticKeys{}
	for _, k := range r.iss.PublicKeys() {
		kid, err := jwks.Thumbprint(k)
		if err != nil {
			return nil, err
		}
		keys[kid] = k
	}
	v, err := auth.NewValidator(auth.Config{Audience: gateway.DefaultServiceName, Issuers: []auth.Issuer{{Name: g.GitLabURL, Keys: keys}}})
	if err != nil {
		return nil, err
	}
	addr := strings.TrimPrefix(r.recorderURL, "http://")
	mc, err := model.New(model.Options{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}})
	if err != nil {
		return nil, err
	}
	defer mc.Close()
	// The same mapping as the appliance's gateway.
	models := appliance.ModelChoice(g, nil)
	twin, err := gateway.New(gateway.Options{Validator: v, Model: mc, Models: models})
	if err != nil {
		return nil, err
	}
	h, err := gr.headers(r.iss)
	if err != nil {
		return nil, err
	}
	var fctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(gr.route)
	for k, vs := range h {
		for _, x := range vs {
			req.Header.Add(k, x)
		}
	}
	req.SetBody(gr.body)
	fctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	lastSeq := func() uint64 {
		recs := r.recorder.Requests()
		if len(recs) == 0 {
			return 0
		}
		return recs[len(recs)-1].Seq
	}
	before := lastSeq()
	twin.Handle(&fctx)
	if sc := fctx.Response.StatusCode(); sc != http.StatusOK {
		return nil, fmt.Errorf("twin gateway: HTTP %d: %.300s", sc, fctx.Response.Body())
	}
	if err := gr.check(fctx.Response.Body()); err != nil {
		return nil, fmt.Errorf("twin gateway: %w", err)
	}
	recs := r.recorder.Requests()
	if n := lastSeq() - before; n != 1 {
		return nil, fmt.Errorf("twin gateway made %d model requests, want 1", n)
	}
	last := recs[len(recs)-1]
	if last.Truncated {
		return nil, errors.New("the recorded model request was truncated")
	}
	hdr := http.Header{}
	for _, k := range []string{"Accept", "Content-Type"} {
		if x := last.Header.Get(k); x != "" {
			hdr.Set(k, x)
		}
	}
	return &capturedRequest{path: last.Path, body: last.Body, header: hdr}, nil
}

// tokenPool hands out pre-minted, distinct tokens' headers round-robin.
type tokenPool struct {
	hs   []http.Header
	next atomic.Uint64
}

func newTokenPool(gr gatewayRequest, iss *gitlabtest.Issuer, n int) (*tokenPool, error) {
	p := &tokenPool{hs: make([]http.Header, n)}
	for i := range p.hs {
		h, err := gr.headers(iss)
		if err != nil {
			return nil, err
		}
		p.hs[i] = h
	}
	return p, nil
}

func (p *tokenPool) header() http.Header {
	return p.hs[(p.next.Add(1)-1)%uint64(len(p.hs))]
}

// measureGateway runs the gateway part: capture, latency at concurrency 1
// with a fresh token per request, throughput with a token pool.
func measureGateway(ctx context.Context, cfg Config, logf func(string, ...any)) (*GatewayResult, error) {
	r, err := startGatewayRig(ctx, gwRigOptions{format: cfg.CompletionFormat}, logf)
	if err != nil {
		return nil, err
	}
	defer r.close()
	gr, note, err := pickRoute(ctx, r, cfg.GatewayRoute)
	if err != nil {
		return nil, err
	}
	if note != "" {
		logf("%s", note)
	}
	capt, err := captureModelRequest(ctx, r, gr)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	res := &GatewayResult{
		Route: gr.route, RouteNote: note, CompletionFormat: cfg.CompletionFormat, ModelPath: capt.path,
		RequestBytes: len(gr.body), ModelBodyBytes: len(capt.body),
	}
	logf("gateway latency: POST %s (%d B) vs the proxy's %s (%d B, the request the gateway sends), %d warm-up + %d measured each, concurrency 1",
		gr.route, len(gr.body), capt.path, len(capt.body), cfg.Warmup, cfg.Requests)
	tr := newTransport(2)
	defer tr.CloseIdleConnections()
	direct := target{url: r.proxy + capt.path, body: capt.body, header: func() http.Header { return capt.header }}
	var cur http.Header
	gw := target{url: r.gateway + gr.route, body: gr.body, header: func() http.Header { return cur }, check: gr.check}
	mint := func() error {
		h, err := gr.headers(r.iss)
		cur = h
		return err
	}
	dt, gt, diff, err := interleave(ctx, cfg.Warmup, cfg.Requests, &client{tr: tr, target: direct}, &client{tr: tr, target: gw}, mint)
	if err != nil {
		return nil, fmt.Errorf("gateway latency: %w", err)
	}
	l := &res.Latency
	l.Requests = cfg.Requests
	l.DirectP50, l.DirectP90, l.DirectP99 = pct(dt, 50), pct(dt, 90), pct(dt, 99)
	l.GatewayP50, l.GatewayP90, l.GatewayP99 = pct(gt, 50), pct(gt, 90), pct(gt, 99)
	l.AddedP50, l.AddedP90, l.AddedP99 = l.GatewayP50-l.DirectP50, l.GatewayP90-l.DirectP90, l.GatewayP99-l.DirectP99
	l.PairedMedian = pct(diff, 50)

	logf("gateway throughput: concurrency %d, %v per path, %d pre-minted tokens", cfg.Concurrency, cfg.ThroughDur, cfg.TokenPool)
	pool, err := newTokenPool(gr, r.iss, cfg.TokenPool)
	if err != nil {
		return nil, err
	}
	res.Tokens = fmt.Sprintf("latency: a fresh token per request (minted before each pair, outside the timed window); throughput: %d distinct pre-minted tokens round-robin (the gateway has no validated-token cache, so reuse does not help it)", cfg.TokenPool)
	tp := &res.Throughput
	tp.Concurrency, tp.TokenPool = cfg.Concurrency, cfg.TokenPool
	if tp.Direct, err = measureThroughput(ctx, cfg, direct); err != nil {
		return nil, fmt.Errorf("gateway throughput, direct: %w", err)
	}
	stopProfile, err := startProfile(cfg.GatewayCPUProfile)
	if err != nil {
		return nil, err
	}
	tp.Gateway, err = measureThroughput(ctx, cfg, target{url: gw.url, body: gw.body, header: pool.header, check: gr.check})
	stopProfile()
	if err != nil {
		return nil, fmt.Errorf("gateway throughput: %w", err)
	}
	if tp.Direct.PerSecond > 0 {
		tp.Ratio = tp.Gateway.PerSecond / tp.Direct.PerSecond
	}
	return res, nil
}

// Markdown writes the gateway part's table.
func (g *GatewayResult) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Gateway: POST %s (%d B, Rails' headers, GitLab token) vs the proxy's %s called directly with the %d B body the gateway sends it (completion_format %q).\n\n",
		g.Route, g.RequestBytes, g.ModelPath, g.ModelBodyBytes, g.CompletionFormat)
	fmt.Fprintln(w, "| measurement | direct (proxy) | through the gateway | result | target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	l := g.Latency
	fmt.Fprintf(w, "| gateway latency p50, c=1, %d requests | %.3f ms | %.3f ms | +%.3f ms added | ≤ %.1f ms | %s |\n",
		l.Requests, l.DirectP50, l.GatewayP50, l.AddedP50, targetGatewayAddedP50, passMiss(l.AddedP50 <= targetGatewayAddedP50))
	fmt.Fprintf(w, "| gateway latency p90 | %.3f ms | %.3f ms | +%.3f ms added | | |\n", l.DirectP90, l.GatewayP90, l.AddedP90)
	fmt.Fprintf(w, "| gateway latency p99 | %.3f ms | %.3f ms | +%.3f ms added | | |\n", l.DirectP99, l.GatewayP99, l.AddedP99)
	fmt.Fprintf(w, "| gateway latency, median of paired differences | | | +%.3f ms | | |\n", l.PairedMedian)
	t := g.Throughput
	fmt.Fprintf(w, "| gateway throughput, c=%d | %.0f req/s (CPU %.0f%%) | %.0f req/s (CPU %.0f%%) | %.0f%% of direct | reported | |\n",
		t.Concurrency, t.Direct.PerSecond, t.Direct.ProcessCPU, t.Gateway.PerSecond, t.Gateway.ProcessCPU, 100*t.Ratio)
	// CPU per request is steadier than the rate on a shared machine.
	fmt.Fprintf(w, "| process CPU per request at c=%d (client + gateway + proxy + sandbox) | %.0f µs | %.0f µs | +%.0f µs | | |\n",
		t.Concurrency, t.Direct.cpuPerRequest(), t.Gateway.cpuPerRequest(), t.Gateway.cpuPerRequest()-t.Direct.cpuPerRequest())
	fmt.Fprintf(w, "\nTokens: %s.\n", g.Tokens)
}

// cpuPerRequest is the process CPU time per completed request, in µs.
func (r Rate) cpuPerRequest() float64 {
	if r.PerSecond <= 0 {
		return 0
	}
	return 1e4 * r.ProcessCPU / r.PerSecond
}
