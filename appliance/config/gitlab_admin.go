package config

import (
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// Defaults of the gitlab_admin section.
const (
	DefaultGitLabAdminPollInterval = 5 * time.Minute
	DefaultGitLabAdminModelFamily  = "GENERAL"
)

// GitLabAdminConfig drives `gitlab connect` and the drift watch: the
// addresses GitLab is told to use for this appliance (empty: derived from
// tls.names and the listeners), the model family of the records it creates,
// and whether the running appliance keeps watching GitLab (with the admin
// token kept in TokenFile), how often, and whether it re-assigns drifted
// features by itself.
type GitLabAdminConfig struct {
	GatewayURL           string        `yaml:"gateway_url"`
	ModelEndpoint        string        `yaml:"model_endpoint"`
	AgentPlatformAddress string        `yaml:"agent_platform_address"`
	ModelFamily          string        `yaml:"model_family"`
	Watch                bool          `yaml:"watch"`
	PollInterval         time.Duration `yaml:"poll_interval"`
	AutoRepair           bool          `yaml:"auto_repair"`
	TokenFile            string        `yaml:"token_file"`
}

// GitLabAdminTokenPath is the file holding the GitLab admin token for the
// drift watch: gitlab_admin.token_file, else statedir.GitLabAdminTokenFile
// in the state directory.
func (c *Config) GitLabAdminTokenPath() string {
	if p := c.GitLabAdmin.TokenFile; p != "" {
		return p
	}
	return filepath.Join(c.StateDir, statedir.GitLabAdminTokenFile)
}

// GitLabConnectStatePath is where `gitlab connect` remembers GitLab's ids of
// the appliance's model records.
func (c *Config) GitLabConnectStatePath() string {
	return filepath.Join(c.StateDir, statedir.GitLabConnectFile)
}

var familyName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

func (v *validator) gitlabAdmin() {
	g := v.c.GitLabAdmin
	if g.GatewayURL != "" {
		if u, err := url.Parse(g.GatewayURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail("gitlab_admin.gateway_url", "%q is not an http(s) URL; write the gateway's address as GitLab reaches it, e.g. https://duo.example.com:5052", g.GatewayURL)
		}
	}
	if g.ModelEndpoint != "" {
		if u, err := url.Parse(g.ModelEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail("gitlab_admin.model_endpoint", "%q is not an http(s) URL, e.g. https://duo.example.com:8080/v1", g.ModelEndpoint)
		}
	}
	if a := g.AgentPlatformAddress; a != "" {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			v.fail("gitlab_admin.agent_platform_address", "%q is not HOST:PORT without a scheme (GitLab's duoAgentPlatformServiceUrl), e.g. duo.example.com:50052", a)
		}
	}
	if !familyName.MatchString(g.ModelFamily) {
		v.fail("gitlab_admin.model_family", "%q is not a GitLab model family (AiAcceptedSelfHostedModels) such as GENERAL, GPT or CLAUDE_3", g.ModelFamily)
	}
	v.durationIn("gitlab_admin.poll_interval", g.PollInterval, 30*time.Second, 24*time.Hour)
	if g.TokenFile != "" {
		v.absPath("gitlab_admin.token_file", g.TokenFile)
	}
	if g.Watch && !v.c.Gateway.Enabled() {
		v.fail("gitlab_admin.watch", "watching GitLab needs gateway.gitlab_url (the GitLab to watch)")
	}
	if g.AutoRepair && !g.Watch {
		v.fail("gitlab_admin.auto_repair", "auto_repair acts on what the drift watch finds: set gitlab_admin.watch: true as well")
	}
}
