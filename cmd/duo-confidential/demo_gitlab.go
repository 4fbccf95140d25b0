//go:build !duo_production

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// Files the demo writes for `gitlab connect` run from another terminal.
const (
	demoConnectConfig = "gitlab-connect-demo.yaml"
	demoGitLabCA      = "demo-gitlab-ca.pem"
)

// demoGitLabPoll is how often the demo's drift watch looks (the shortest
// interval the watch allows), so drift shows up quickly.
const demoGitLabPoll = gitlabconnect.MinPollInterval

// demoConnect is the demo GitLab's admin API: the token, where it is kept,
// and the configuration file for the CLI.
type demoConnect struct {
	admin              *gitlabtest.Admin
	token              string
	tokenFile, cfgFile string
}

// setupDemoGitLab points the appliance's configuration at the demo
// GitLab's admin API before the appliance is built: the gateway and proxy
// addresses GitLab is given, the drift watch (every 30 s, token in the
// state directory), and a token for an administrator.
func setupDemoGitLab(cfg *config.Config, gwAddr, proxyAddr net.Addr) (*demoConnect, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("demo GitLab token: %w", err)
	}
	d := &demoConnect{token: "glpat-DEMO-" + hex.EncodeToString(b), tokenFile: cfg.GitLabAdminTokenPath()}
	if err := gitlabconnect.SaveToken(d.tokenFile, d.token); err != nil {
		return nil, err
	}
	cfg.GitLabAdmin.GatewayURL = "https://" + net.JoinHostPort("localhost", port(gwAddr))
	cfg.GitLabAdmin.ModelEndpoint = "https://" + net.JoinHostPort("localhost", port(proxyAddr)) + "/v1"
	cfg.GitLabAdmin.Watch = true
	cfg.GitLabAdmin.PollInterval = demoGitLabPoll
	return d, nil
}

func port(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// serveAdminAPI makes the demo GitLab answer GitLab's Duo Self-Hosted admin
// API (a stand-in: GitLab in development mode, so localhost URLs are
// accepted) with connection checks that really call the appliance's
// gateway, and writes the CLI's configuration file.
func (d *demoConnect) serveAdminAPI(cfg *config.Config, iss *gitlabtest.Issuer, gitlab *gitlabtest.Server, client *http.Client) error {
	admin, err := gitlabtest.NewAdmin(gitlabtest.AdminOptions{
		AllowLocalhost: true,
		CheckModel:     iss.ModelCheck(client),
		ProbeHost: func(ctx context.Context, u string) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			return err
		},
	})
	if err != nil {
		return err
	}
	admin.AcceptBetaTerms(true)
	admin.AddToken(d.token, "root", true, "api", "admin_mode")
	iss.SetAdmin(admin)
	d.admin = admin
	ca := filepath.Join(cfg.StateDir, demoGitLabCA)
	if err := os.WriteFile(ca, gitlab.CertPEM, 0o644); err != nil {
		return err
	}
	g := cfg.Gateway
	d.cfgFile = filepath.Join(cfg.StateDir, demoConnectConfig)
	yaml := fmt.Sprintf(`# Written by duo-confidential demo for "gitlab connect" against its DEMO GitLab.
state_dir: %s
outbound:
  ca_bundle: %s
gateway:
  gitlab_url: %s
  models:
    default: %s
    code_completions: %s
    code_generations: %s
gitlab_admin:
  gateway_url: %s
  model_endpoint: %s
`, cfg.StateDir, ca, g.GitLabURL, g.Models.Default, g.Models.CodeCompletions, g.Models.CodeGenerations,
		cfg.GitLabAdmin.GatewayURL, cfg.GitLabAdmin.ModelEndpoint)
	return os.WriteFile(d.cfgFile, []byte(yaml), 0o600)
}

// print tells how to connect the demo GitLab.
func (d *demoConnect) print(out io.Writer) {
	fmt.Fprintf(out, `
The DEMO GitLab also answers GitLab's Duo Self-Hosted admin API (a stand-in
with GitLab 18.9's rules). Connect it to this appliance, as an admin would
connect a real GitLab:

  duo-confidential --config %[1]s gitlab connect --plan --token-file %[2]s
  duo-confidential --config %[1]s gitlab connect --apply --token-file %[2]s

or with Connect on the admin UI's GitLab page (the DEMO admin token is in
%[2]s). The drift watch looks every %[3]s; until connected, the GitLab page
lists every feature that is not on this appliance.
`, d.cfgFile, d.tokenFile, demoGitLabPoll)
}

// check is --check's proof: plan, apply and verify against the demo
// GitLab, then a second plan that changes nothing.
func (d *demoConnect) check(ctx context.Context, out io.Writer, cfg *config.Config, client *http.Client) error {
	c := appliance.GitLabConnector{Config: cfg, HTTPClient: client}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := c.Connect(ctx, d.token, appliance.ConnectOptions{Apply: true})
	if err != nil {
		return fmt.Errorf("gitlab connect against the demo GitLab: %w", err)
	}
	if !res.OK() {
		var b strings.Builder
		res.WriteText(&b, true)
		return fmt.Errorf("gitlab connect against the demo GitLab did not verify:\n%s", b.String())
	}
	again, err := c.Connect(ctx, d.token, appliance.ConnectOptions{})
	if err != nil || !again.Plan.NoOp() {
		return fmt.Errorf("a second gitlab connect is not a no-op: %v %v", err, again)
	}
	fmt.Fprintf(out, "\n`gitlab connect` configured the demo GitLab (%d changes), its connection checks reached the gateway, and a second run changes nothing.\n", len(res.Result.Changes))
	return nil
}
