package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

const (
	testAdminToken = "glpat-cli-admin-secret"
	testReadToken  = "glpat-cli-read-secret"
)

// gitlabSetup starts a demo GitLab with the admin API stand-in and writes a
// configuration that points the appliance at it.
func gitlabSetup(t *testing.T) (admin *gitlabtest.Admin, cfgPath, stateDir string) {
	t.Helper()
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err = gitlabtest.NewAdmin(gitlabtest.AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin.AcceptBetaTerms(true)
	admin.AddToken(testAdminToken, "root", true, "api")
	admin.AddToken(testReadToken, "root", true, "read_api")
	iss.SetAdmin(admin)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gitlabtest.Serve(iss, ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	ca := filepath.Join(dir, "gitlab-ca.pem")
	if err := os.WriteFile(ca, srv.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "config.yaml")
	cfg := "state_dir: " + stateDir + "\noutbound:\n  ca_bundle: " + ca + "\ngateway:\n  gitlab_url: " + srv.URL +
		"\n  models:\n    default: chat-model\n    code_completions: code-model\ngitlab_admin:\n  gateway_url: https://duo.example.com:5052\n" +
		"  model_endpoint: https://duo.example.com:8080/v1\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return admin, cfgPath, stateDir
}

func tokenFile(t *testing.T, token string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func noToken(t *testing.T, r result) {
	t.Helper()
	for _, tok := range []string{testAdminToken, testReadToken} {
		if strings.Contains(r.stdout+r.stderr, tok) {
			t.Errorf("the token appears in the output")
		}
	}
}

func TestGitLabConnectPlanApplyVerifyNoOp(t *testing.T) {
	admin, cfg, state := gitlabSetup(t)
	tok := tokenFile(t, testAdminToken, 0o600)

	r := runBin(t, nil, "--config", cfg, "gitlab", "connect", "--plan", "--token-file", tok)
	r.want(t, 0, []string{"Plan: 3 settings to set, 2 model records to create, 0 to update, 16 features to assign, 2 Agent Platform features to assign.", "duoAgentPlatformServiceUrl: (none) → duo.example.com:50052", "+ create-model           duo-confidential-chat-model",
		"CODE_COMPLETIONS (Code Completion): unassigned → self_hosted: duo-confidential-code-model", "Complete the Agent Platform onboarding", "--apply"}, nil)
	noToken(t, r)
	if admin.Mutations() != 0 {
		t.Fatalf("--plan made %d mutations", admin.Mutations())
	}

	r = runBin(t, nil, "--config", cfg, "gitlab", "connect", "--apply", "--watch", "--token-file", tok)
	r.want(t, 0, []string{"Applied: 23 done, 0 failed, 0 not attempted.", "ok   connection check duo-confidential-chat-model", "ok   cloudConnectorStatus", "gitlab_admin.watch: true"}, nil)
	noToken(t, r)
	kept := filepath.Join(state, "gitlab-admin-token")
	if fi, err := os.Stat(kept); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept token: %v %v", fi, err)
	}
	if prov, m := admin.Feature("SUMMARIZE_REVIEW"); prov != "self_hosted" || m != "duo-confidential-chat-model" {
		t.Errorf("SUMMARIZE_REVIEW: %s %s", prov, m)
	}

	r = runBin(t, nil, "--config", cfg, "gitlab", "connect", "--token-file", kept)
	r.want(t, 0, []string{"No changes"}, nil)
	r = runBin(t, nil, "--config", cfg, "gitlab", "verify", "--token-file", kept)
	r.want(t, 0, []string{"ok   features: 18 on this appliance's models, 0 disabled, 0 hidden, 0 not served here"}, nil)

	admin.SetFeature("DUO_CHAT", "vendored", 0)
	r = runBin(t, nil, "--config", cfg, "gitlab", "verify", "--token-file", kept)
	r.want(t, 1, []string{"General Chat (DUO_CHAT) is on a GitLab-managed model", "access_probe"}, []string{"not (fully) connected"})
}

func TestGitLabConnectRefusals(t *testing.T) {
	admin, cfg, _ := gitlabSetup(t)
	r := runBin(t, nil, "--config", cfg, "gitlab", "connect", "--apply", "--token-file", tokenFile(t, testReadToken, 0o600))
	r.want(t, 1, nil, []string{"nothing was changed", "needs the api scope", "fix:"})
	noToken(t, r)
	r = runBin(t, nil, "--config", cfg, "gitlab", "connect", "--apply", "--token-file", tokenFile(t, testAdminToken, 0o644))
	r.want(t, 1, nil, []string{"readable by others", "chmod 600"})
	r = runBin(t, nil, "--config", cfg, "gitlab", "connect", "--watch", "--token-file", tokenFile(t, testAdminToken, 0o600))
	r.want(t, 1, nil, []string{"--watch keeps the token for the drift watch and needs --apply"})
	if admin.Mutations() != 0 {
		t.Errorf("a refused run made %d mutations", admin.Mutations())
	}
}

func TestGitLabConnectDownMidApplyThenRerun(t *testing.T) {
	admin, cfg, _ := gitlabSetup(t)
	tok := tokenFile(t, testAdminToken, 0o600)
	admin.FailAfterMutations(3)
	r := runBin(t, nil, "--config", cfg, "gitlab", "connect", "--apply", "--token-file", tok)
	r.want(t, 1, []string{"Applied: 5 done, 15 failed, 3 not attempted.", "not attempted", "Stopped: GitLab did not answer", "run the same command again"}, nil)
	admin.SetDown(false)
	r = runBin(t, nil, "--config", cfg, "gitlab", "connect", "--apply", "--token-file", tok)
	r.want(t, 0, []string{"0 failed, 0 not attempted"}, nil)
	if len(admin.Models()) != 2 {
		t.Errorf("models %+v", admin.Models())
	}
}
