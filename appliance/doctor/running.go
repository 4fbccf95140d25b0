package doctor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/wording"
	"github.com/duo-confidential/duo-confidential/proxy"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
)

// maxProbeBody bounds what doctor reads of any answer.
const maxProbeBody = 1 << 20

// attestationApplies skips the one-off attestation when there is no key
// to ask the service with.
func (e *env) attestationApplies() *checkResult {
	if e.o.Sandbox == "" && e.cfg.Privatemode.APIKeyFile == "" {
		r := skip("no Privatemode API key (privatemode.api_key_file) to attest %s with; the running appliance's verdict shows in proxy-ready", e.cfg.Privatemode.Endpoint)
		return &r
	}
	return nil
}

// checkAttestation attests the Privatemode endpoint once, with the
// appliance's own policy, and prints the verdict. Nothing is recorded in
// the trust log and no collateral is written; a rollback is still refused.
func (e *env) checkAttestation(ctx context.Context) checkResult {
	cfg := e.cfg
	endpoint := cfg.Privatemode.Endpoint
	hw := attest.HardwareOptions{MaxCollateralAge: cfg.Attestation.Collateral.MaxAge}
	tcbPolicy, err := cfg.TCBPolicy()
	if err != nil {
		return fail("fix attestation.tcb_policy in the configuration", "%v", err)
	}
	hw.TCBPolicy = tcbPolicy
	var policy attest.ManifestPolicy
	var apiKey string
	if e.o.Sandbox != "" {
		sb, key, err := e.o.LoadSandbox(e.o.Sandbox)
		if err != nil {
			return fail("run `duo-confidential sandbox --out DIR` first", "%v", err)
		}
		endpoint, apiKey = sb.Endpoint, key
		hw.Roots, hw.Collateral = sb.Roots, sb.Collateral
		policy = attest.ManifestPolicy{Mode: attest.ModePinned, Pinned: sb.Manifest}
	} else {
		b, err := os.ReadFile(cfg.Privatemode.APIKeyFile)
		if err != nil {
			return fail("see key-files", "read privatemode.api_key_file: %v", err)
		}
		apiKey = strings.TrimSpace(string(b))
		if policy, err = cfg.ManifestPolicy("", config.Online); err != nil {
			return fail("see the message", "manifest policy: %v", err)
		}
		if hw.Collateral, err = cfg.ReadOnlyCollateralSource(); err != nil {
			return fail(attest.RefreshHint, "%v", err)
		}
	}
	client, err := cfg.OutboundClient()
	if err != nil {
		return fail("fix outbound.ca_bundle", "%v", err)
	}
	api, err := secret.NewClient(endpoint, apiKey, proxy.ProtocolVersion, client)
	if err != nil {
		return fail("fix privatemode.endpoint or the key file", "%v", err)
	}
	nonce := make([]byte, attest.NonceSize)
	_, _ = rand.Read(nonce)
	raw, err := api.Attest(ctx, nonce)
	if err != nil {
		fix := "check privatemode.endpoint, DNS, the firewall, HTTPS_PROXY/NO_PROXY and outbound.ca_bundle"
		if errors.Is(err, secret.ErrUnauthorized) {
			fix = "put a valid Privatemode API key into " + cfg.Privatemode.APIKeyFile
		}
		return fail(fix, "%s: %v", endpoint, err)
	}
	doc, err := attest.ParseDoc(raw)
	if err != nil {
		return fail("upgrade the appliance if the vendor changed the format", "%s: %v", endpoint, err)
	}
	v := &attest.Verifier{Manifest: policy, Hardware: hw}
	res, err := v.VerifyDoc(ctx, doc, nonce)
	if err != nil {
		return fail(fmt.Sprintf("see the error class %q in docs/operations.md \"Troubleshooting by error class\"", res.ErrorClass),
			"%s: rejected [%s]: %s", endpoint, res.ErrorClass, res.Error)
	}
	if tl, err := attest.OpenTrustLog(cfg.TrustLogPath()); err == nil {
		if err := tl.CheckRollback(res.ManifestSHA256, policy.ApprovedRollbacks); err != nil {
			return fail("approve it in attestation.manifest.approved_rollbacks only if you intend to return to it", "%s: %v", endpoint, err)
		}
	}
	var tcb []string
	for _, t := range res.TCB {
		if !slices.Contains(tcb, t.Status) {
			tcb = append(tcb, t.Status)
		}
	}
	detail := fmt.Sprintf("%s: %s, %s %s, manifest %s…, TCB %s", endpoint, res.Verdict, res.Platform, wording.OrDash(res.Product),
		short12(res.ManifestSHA256), wording.OrDash(strings.Join(tcb, "/")))
	if e.o.Sandbox != "" {
		return warn("this is the sandbox: drop --sandbox to attest the real service",
			"%s; verified against the sandbox's TEST roots: NOT CONFIDENTIAL", detail)
	}
	return pass("%s", detail)
}

// proxyTokenKnown skips the authenticated proxy checks when the proxy
// needs a token doctor was not given.
func (e *env) proxyTokenKnown() *checkResult {
	if len(e.cfg.Proxy.InboundTokenSHA256) > 0 && e.o.ProxyToken == "" {
		r := skip("proxy.inbound_token_sha256 is set: pass --proxy-token or DUO_CONFIDENTIAL_PROXY_TOKEN to check this")
		return &r
	}
	return nil
}

// get sends a request to the running appliance and reads the answer.
func (e *env) request(ctx context.Context, method, url string, body []byte, token string) (int, []byte, error) {
	client, err := e.listenerClient()
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	return resp.StatusCode, b, err
}

// readyBody is the /readyz and /monitoring/ready answer.
type readyBody struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	Notice string `json:"notice"`
}

// checkProxyReady asks the running proxy whether the backend is attested
// and the secret exchanged (/readyz).
func (e *env) checkProxyReady(ctx context.Context) checkResult {
	url := e.baseURL(e.proxyAddr()) + "/readyz"
	status, b, err := e.request(ctx, http.MethodGet, url, nil, "")
	if err != nil {
		return fail("read `journalctl -u duo-confidential`", "GET %s: %v", url, err)
	}
	var r readyBody
	_ = json.Unmarshal(b, &r)
	if status != http.StatusOK || !r.Ready {
		return fail("see docs/operations.md \"Running the proxy\" and the attestation error classes; `journalctl -u duo-confidential` has the details",
			"GET %s: %d, not ready: %s", url, status, wording.OrDash(r.Reason))
	}
	if r.Notice != "" {
		return warn("serve without --sandbox against the real service", "%s: ready, but %s", url, r.Notice)
	}
	return pass("%s: ready (backend attested, secret exchanged)", url)
}

// checkProxyModels lists the proxy's models, the call GitLab's
// verify_self_hosted_setup makes to <endpoint>/v1/models, and checks that
// the gateway's models are among them.
func (e *env) checkProxyModels(ctx context.Context) checkResult {
	ids, r := e.proxyModels(ctx)
	if r != nil {
		return *r
	}
	g := e.cfg.Gateway
	if g.Enabled() {
		for _, m := range []string{g.Models.Default, g.Models.CodeCompletions, g.Models.CodeGenerations, g.Models.DuoChat} {
			if m != "" && !slices.Contains(ids, m) {
				return fail("set gateway.models to ids the backend lists", "gateway.models names %q, which the backend does not serve (it serves: %s)", m, strings.Join(ids, ", "))
			}
		}
	}
	return pass("serves %d %s: %s", len(ids), wording.Plural(len(ids), "model", "models"), strings.Join(ids, ", "))
}

func (e *env) proxyModels(ctx context.Context) ([]string, *checkResult) {
	url := e.baseURL(e.proxyAddr()) + "/v1/models"
	status, b, err := e.request(ctx, http.MethodGet, url, nil, e.o.ProxyToken)
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	switch {
	case err != nil:
		r := fail("read `journalctl -u duo-confidential`", "GET %s: %v", url, err)
		return nil, &r
	case status == http.StatusUnauthorized:
		r := fail("pass the token whose SHA-256 is in proxy.inbound_token_sha256", "GET %s: 401: the proxy refused the token", url)
		return nil, &r
	case status != http.StatusOK || json.Unmarshal(b, &list) != nil:
		r := fail("read `journalctl -u duo-confidential`", "GET %s: %d %s", url, status, firstLine(b))
		return nil, &r
	}
	ids := make([]string, 0, len(list.Data))
	for _, d := range list.Data {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

// checkProxyCompletion sends one tiny chat completion through the proxy:
// encryption, the backend and decryption in one round trip.
func (e *env) checkProxyCompletion(ctx context.Context) checkResult {
	g := e.cfg.Gateway.Models
	model := cmp.Or(g.DuoChat, g.Default)
	if model == "" {
		ids, r := e.proxyModels(ctx)
		if r != nil {
			return *r
		}
		if len(ids) == 0 {
			return fail("check the Privatemode service", "the backend lists no models")
		}
		model = ids[0]
	}
	body, _ := json.Marshal(map[string]any{
		"model":      model,
		"messages":   []map[string]string{{"role": "user", "content": "Reply with the single word OK."}},
		"max_tokens": 8,
		"stream":     false,
	})
	url := e.baseURL(e.proxyAddr()) + "/v1/chat/completions"
	start := time.Now()
	status, b, err := e.request(ctx, http.MethodPost, url, body, e.o.ProxyToken)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		return fail("read `journalctl -u duo-confidential`", "POST %s: %v", url, err)
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if status != http.StatusOK || json.Unmarshal(b, &r) != nil || len(r.Choices) == 0 || r.Choices[0].Message.Content == "" {
		return fail("read `journalctl -u duo-confidential`; the proxy's error names the cause", "POST %s (model %s): %d %s", url, model, status, firstLine(b))
	}
	return pass("model %s answered %d characters in %s through the proxy", model, len(r.Choices[0].Message.Content), took)
}

// checkGatewayHost is GitLab's "Run health check" host probe: HEAD on the
// gateway URL, where any HTTP answer (401 included) counts.
func (e *env) checkGatewayHost(ctx context.Context) checkResult {
	url := e.baseURL(e.gatewayAddr()) + "/"
	status, _, err := e.request(ctx, http.MethodHead, url, nil, "")
	if err != nil {
		return fail("read `journalctl -u duo-confidential`", "HEAD %s: %v", url, err)
	}
	return pass("HEAD %s: %d (GitLab's Run health check accepts any HTTP answer)", url, status)
}

// checkGatewayHealthz is what gitlab:duo:verify_self_hosted_setup checks:
// GET /monitoring/healthz answers 200 {}.
func (e *env) checkGatewayHealthz(ctx context.Context) checkResult {
	url := e.baseURL(e.gatewayAddr()) + "/monitoring/healthz"
	status, b, err := e.request(ctx, http.MethodGet, url, nil, "")
	if err != nil {
		return fail("read `journalctl -u duo-confidential`", "GET %s: %v", url, err)
	}
	if status != http.StatusOK || strings.TrimSpace(string(b)) != "{}" {
		return fail("upgrade the appliance or check what answers on gateway.listen", "GET %s: %d %s, want 200 {}", url, status, firstLine(b))
	}
	return pass("GET %s: 200 {} (what gitlab:duo:verify_self_hosted_setup checks)", url)
}

// checkGatewayReady asks the gateway whether Duo requests can be served
// now: GitLab's keys, the attested backend and the configured models.
func (e *env) checkGatewayReady(ctx context.Context) checkResult {
	url := e.baseURL(e.gatewayAddr()) + "/monitoring/ready"
	status, b, err := e.request(ctx, http.MethodGet, url, nil, "")
	if err != nil {
		return fail("read `journalctl -u duo-confidential`", "GET %s: %v", url, err)
	}
	var r readyBody
	_ = json.Unmarshal(b, &r)
	if status == http.StatusOK && r.Ready {
		return pass("GET %s: ready", url)
	}
	fix := "see docs/operations.md \"Connecting GitLab\" (the table under /monitoring/ready)"
	switch {
	case strings.Contains(r.Reason, "GitLab keys"):
		fix = "see gitlab-keys above: the appliance cannot fetch GitLab's keys (it retries on its own)"
	case strings.Contains(r.Reason, "not served by the backend"):
		fix = "set gateway.models (or gateway.allowed_models) to ids the backend lists (see proxy-models)"
	case strings.Contains(r.Reason, "backend not ready"):
		fix = "see proxy-ready and the attestation error classes in docs/operations.md"
	}
	return fail(fix, "GET %s: %d, not ready: %s", url, status, wording.OrDash(r.Reason))
}

// checkGitLabProbes names the probes only GitLab can run: they need a token
// GitLab issues.
func (e *env) checkGitLabProbes(context.Context) checkResult {
	return skip("need a GitLab-issued token, so run them from GitLab: Admin > GitLab Duo > Self-hosted models > Test connection " +
		"(POST /v1/prompts/model_configuration%%2Fcheck), the Code Suggestions probe (POST /v2/code/completions) of Run health check, " +
		"and `gitlab-rake \"gitlab:duo:verify_self_hosted_setup[<admin user>]\"` on the GitLab server")
}

// firstLine is the start of a body, for error details.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
