package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

func TestGitLabAdminConfig(t *testing.T) {
	c := mustParse(t, "")
	g := c.GitLabAdmin
	if g.Watch || g.AutoRepair || g.PollInterval != DefaultGitLabAdminPollInterval || g.ModelFamily != "GENERAL" {
		t.Errorf("defaults: %+v", g)
	}
	if got, want := c.GitLabAdminTokenPath(), filepath.Join(DefaultStateDir, statedir.GitLabAdminTokenFile); got != want {
		t.Errorf("token path %q, want %q", got, want)
	}
	c = mustParse(t, "gateway:\n  gitlab_url: https://gitlab.example.com\n  models:\n    default: m\ngitlab_admin:\n  watch: true\n  auto_repair: true\n  poll_interval: 2m\n"+
		"  gateway_url: https://duo.example.com:5052\n  agent_platform_address: duo.example.com:50052\n  token_file: /etc/duo-confidential/gitlab-token\n",
		"DUO_CONFIDENTIAL_GITLAB_ADMIN_MODEL_FAMILY=GPT")
	if g := c.GitLabAdmin; !g.Watch || !g.AutoRepair || g.PollInterval != 2*time.Minute || g.ModelFamily != "GPT" || c.GitLabAdminTokenPath() != "/etc/duo-confidential/gitlab-token" {
		t.Errorf("parsed: %+v", g)
	}
}

func TestGitLabAdminConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"gateway url", "gitlab_admin:\n  gateway_url: duo.example.com\n", []string{"gitlab_admin.gateway_url", "http(s) URL"}},
		{"endpoint", "gitlab_admin:\n  model_endpoint: ftp://x\n", []string{"gitlab_admin.model_endpoint"}},
		{"agent platform with scheme", "gitlab_admin:\n  agent_platform_address: https://duo.example.com:50052\n", []string{"gitlab_admin.agent_platform_address", "without a scheme"}},
		{"family", "gitlab_admin:\n  model_family: general\n", []string{"gitlab_admin.model_family"}},
		{"poll interval", "gitlab_admin:\n  poll_interval: 5s\n", []string{"gitlab_admin.poll_interval"}},
		{"watch without gitlab", "gitlab_admin:\n  watch: true\n", []string{"gitlab_admin.watch", "gateway.gitlab_url"}},
		{"repair without watch", "gitlab_admin:\n  auto_repair: true\n", []string{"gitlab_admin.auto_repair", "watch: true"}},
		{"relative token file", "gitlab_admin:\n  token_file: token\n", []string{"gitlab_admin.token_file", "absolute"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStr(tc.yaml)
			wantErr(t, err, tc.want...)
		})
	}
}
