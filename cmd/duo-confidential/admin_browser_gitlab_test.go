package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var (
	reConnectConfig = regexp.MustCompile(`--config (\S+gitlab-connect-demo\.yaml) gitlab connect --plan --token-file (\S+)`)
	reGitLabURL     = regexp.MustCompile(`(?m)^  gitlab_url: (\S+)$`)
)

// demoGitLab is the running demo's GitLab admin API, as the test (playing
// another GitLab administrator) reaches it.
type demoGitLab struct {
	url, token string
	client     *http.Client
}

func findDemoGitLab(t *testing.T, demoOut string) *demoGitLab {
	t.Helper()
	m := reConnectConfig.FindStringSubmatch(demoOut)
	if m == nil {
		t.Fatalf("the demo did not print the gitlab connect command:\n%s", demoOut)
	}
	cfg, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(m[2])
	if err != nil {
		t.Fatal(err)
	}
	u := reGitLabURL.FindSubmatch(cfg)
	ca, err := os.ReadFile(filepath.Join(filepath.Dir(m[1]), "demo-gitlab-ca.pem"))
	if u == nil || err != nil {
		t.Fatalf("demo connect config %s: %v\n%s", m[1], err, cfg)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &demoGitLab{url: string(u[1]), token: strings.TrimSpace(string(tok)),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// vendor switches a feature to a GitLab-managed model, as someone choosing
// "GitLab AI vendor model" in GitLab's admin area would.
func (g *demoGitLab) vendor(t *testing.T, feature string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": `mutation { aiFeatureSettingUpdate(input: {features: [` + feature + `], provider: VENDORED}) { errors } }`})
	req, _ := http.NewRequest(http.MethodPost, g.url+"/api/graphql", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("vendoring %s in the demo GitLab: HTTP %d", feature, resp.StatusCode)
	}
}

// waitPageText reloads path until main's text contains want (bounded: the
// demo's drift watch polls every 30 s).
func waitPageText(t *testing.T, ctx context.Context, url, want string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
			t.Fatal(err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(text, want) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not show %q within %s:\n%s", url, want, limit, text)
		}
		time.Sleep(time.Second)
	}
}

// adminGitLabConnect drives the GitLab page: the drift watch's red lines
// before connecting, Connect (Apply) with an admin token, the all-clear,
// then drift made in GitLab appears within one poll on the page and in
// /api/status.
func adminGitLabConnect(t *testing.T, ctx context.Context, d *demoProc, demoOut, dir string) {
	gl := findDemoGitLab(t, demoOut)
	page := d.admin + "/admin/gitlab"
	text := waitPageText(t, ctx, page, "General Chat (DUO_CHAT) has no model", 45*time.Second)
	if !strings.Contains(text, "gitlab connect --apply") {
		t.Errorf("the drift line names no fix:\n%s", text)
	}
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("li.callout.bad.drift").length`))
	if err != nil || n < 10 {
		t.Errorf("red drift lines: %d, %v", n, err)
	}
	lowContrast(t, ctx, "gitlab (drift before connect)")
	shot(t, ctx, dir, "gitlab-unconnected")

	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("gitlab-token"), gl.token),
		chromedp.Click(chromedp.CSS(`button[value="apply"]`)),
		chromedp.WaitVisible(chromedp.ID("connect-outcome")),
	); err != nil {
		t.Fatalf("connect: %v", err)
	}
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Applied and verified.") || !strings.Contains(out, "Successfully connected to the self-hosted model") || strings.Contains(out, gl.token) {
		t.Fatalf("connect outcome:\n%s", out)
	}
	lowContrast(t, ctx, "gitlab (connected)")
	shot(t, ctx, dir, "gitlab-connect")
	waitPageText(t, ctx, page, "Every feature GitLab shows is on this appliance's models", 45*time.Second)

	gl.vendor(t, "DUO_CHAT")
	text = waitPageText(t, ctx, page, "General Chat (DUO_CHAT) is on a GitLab-managed model", 45*time.Second)
	if !strings.Contains(text, "access_probe") {
		t.Errorf("the cloud probes GitLab now runs are not reported:\n%s", text)
	}
	lowContrast(t, ctx, "gitlab (drift)")
	shot(t, ctx, dir, "gitlab-drift")

	if err := chromedp.Do(ctx, chromedp.Navigate(d.admin+"/api/status")); err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		GitLab struct {
			OK       bool           `json:"ok"`
			Counts   map[string]int `json:"counts"`
			Problems []struct {
				Feature string `json:"feature"`
			} `json:"problems"`
		} `json:"gitlab"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/api/status: %v\n%s", err, body)
	}
	if st.GitLab.OK || st.GitLab.Counts["vendored"] != 1 || len(st.GitLab.Problems) == 0 || st.GitLab.Problems[0].Feature != "DUO_CHAT" {
		t.Errorf("/api/status gitlab: %+v", st.GitLab)
	}
	// The drift is in the trust log too, hash-chained with the attestations.
	text = waitPageText(t, ctx, d.admin+"/admin/attestation", "drift: 2 problems: General Chat (DUO_CHAT) is on a GitLab-managed model", 10*time.Second)
	if !strings.Contains(text, "hash chain verified") || !strings.Contains(text, "connected: 18 features on this appliance's models") {
		t.Errorf("trust log:\n%s", text)
	}
	lowContrast(t, ctx, "attestation (GitLab events)")

	// Back to a page (the caller signs out through its form).
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
		t.Fatal(err)
	}
}
