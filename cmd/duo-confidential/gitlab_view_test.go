package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// The CLI runs apart from serve: without a running appliance it says so
// instead of claiming a count.
func TestGitLabVerifyApplianceNotRunning(t *testing.T) {
	_, cfg, _ := gitlabSetup(t)
	tok := tokenFile(t, testAdminToken, 0o600)
	env := []string{"DUO_CONFIDENTIAL_ADMIN_LISTEN=" + freeAddr(t)}
	r := runBin(t, env, "--config", cfg, "gitlab", "connect", "--apply", "--token-file", tok)
	r.want(t, 0, []string{"SKIP: the appliance's own count of GitLab's connection checks: the appliance is not running here (nothing listens on admin.listen"}, nil)
	r = runBin(t, env, "--config", cfg, "gitlab", "verify", "--token-file", tok)
	r.want(t, 0, []string{"SKIP: the appliance's own count", "the appliance is not running here"}, nil)
	lacks(t, r, "answered")
}

// With serve running, verify reads the appliance's /metrics before and
// after: GitLab's connection checks (the stand-in sends Rails' probe to the
// real gateway) show up as the appliance's own count, and a GitLab that does
// not call the gateway shows up as zero with the likely cause.
func TestGitLabVerifyCountsRunningAppliance(t *testing.T) {
	dir := startSandboxProc(t)
	iss, gl := startGitLab(t)
	gwAddr, admAddr := freeAddr(t), freeAddr(t)
	_, gwPort, _ := net.SplitHostPort(gwAddr)
	var callGateway atomic.Bool
	callGateway.Store(true)
	var client *http.Client
	admin, err := gitlabtest.NewAdmin(gitlabtest.AdminOptions{CheckModel: func(ctx context.Context, _ string, _ gitlabtest.AdminModel) string {
		if !callGateway.Load() {
			return ""
		}
		tok, err := iss.Token(gitlabtest.TokenOptions{})
		if err != nil {
			return err.Error()
		}
		body := `{"inputs":{},"stream":false,"model_metadata":{"name":"general","endpoint":"http://vllm:8000/v1","api_key":"secret","provider":"openai","identifier":""}}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://localhost:"+gwPort+"/v1/prompts/model_configuration%2Fcheck", strings.NewReader(body))
		if err != nil {
			return err.Error()
		}
		req.Header = iss.Headers(tok, gitlabtest.TokenOptions{})
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	admin.AcceptBetaTerms(true)
	admin.AddToken(testAdminToken, "root", true, "api")
	iss.SetAdmin(admin)
	state := t.TempDir()
	cfg := writeTemp(t, "config.yaml", fmt.Sprintf(`state_dir: %s
outbound:
  ca_bundle: %s
gateway:
  listen: %s
  gitlab_url: %s
  models:
    default: %s
    code_completions: %s
admin:
  listen: %s
  metrics_auth: none
gitlab_admin:
  gateway_url: https://duo.example.com:5052
  model_endpoint: https://duo.example.com:8080/v1
`, state, writeTemp(t, "gitlab-ca.pem", string(gl.CertPEM)), gwAddr, gl.URL, sandbox.ModelChat, sandbox.ModelCode, admAddr))
	p := startProc(t, []string{"DUO_CONFIDENTIAL_ADMIN_LISTEN=" + admAddr}, "--config", cfg, "serve", "--sandbox", dir, "--listen", freeAddr(t), "--drain", "5s")
	p.waitUntil(t, "the admin listener", func() bool {
		c, err := net.DialTimeout("tcp", admAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	client = localCAClient(t, state)
	e := &gatewayEnv{t: t, serve: p, gw: "https://localhost:" + gwPort, gitlab: iss, state: state, client: client}
	e.waitReady()

	tok := tokenFile(t, testAdminToken, 0o600)
	r := runBin(t, nil, "--config", cfg, "gitlab", "connect", "--apply", "--token-file", tok)
	r.want(t, 0, []string{"This appliance's gateway answered 2 connection check(s) from GitLab during this run (HTTP 200)."}, nil)
	lacks(t, r, "SKIP", "did not reach")
	r = runBin(t, nil, "--config", cfg, "gitlab", "verify", "--token-file", tok)
	r.want(t, 0, []string{"answered 2 connection check(s)"}, nil)
	lacks(t, r, "SKIP", "did not reach")

	callGateway.Store(false)
	r = runBin(t, nil, "--config", cfg, "gitlab", "verify", "--token-file", tok)
	r.want(t, 0, []string{"answered 0 connection check(s)", "GitLab's connection checks did not reach this appliance"}, nil)
}

// lacks fails when r's output holds any of s.
func lacks(t *testing.T, r result, s ...string) {
	t.Helper()
	for _, x := range s {
		if strings.Contains(r.stdout+r.stderr, x) {
			t.Errorf("output holds %q:\n%s", x, r.stdout)
		}
	}
}
