package appliance

import (
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

func gitlabConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Gateway.GitLabURL = "https://gitlab.example.com"
	cfg.Gateway.Listen = "0.0.0.0:5052"
	cfg.Proxy.Listen = "0.0.0.0:8080"
	cfg.Gateway.Models = config.GatewayModels{Default: "big", CodeCompletions: "small"}
	cfg.TLS.Names = []string{"duo.example.com"}
	return cfg
}

func TestGitLabTarget(t *testing.T) {
	cfg := gitlabConfig(t)
	tg, err := GitLabTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The Agent Platform is served by default: GitLab is pointed at it.
	if tg.GatewayURL != "https://duo.example.com:5052" || tg.AgentPlatformAddr != "duo.example.com:50052" || tg.TimeoutSeconds != 70 {
		t.Errorf("target %+v", tg)
	}
	off := gitlabConfig(t)
	off.AgentPlatform.Listen = ""
	if tg, err := GitLabTarget(off); err != nil || tg.AgentPlatformAddr != "" {
		t.Errorf("Agent Platform off: target %+v, %v", tg, err)
	}
	if len(tg.Models) != 2 || tg.Models[0].Name != "duo-confidential-big" || tg.Models[1].Identifier != "custom_openai/small" ||
		tg.Models[0].Endpoint != "https://duo.example.com:8080/v1" || tg.Models[0].Family != "GENERAL" {
		t.Errorf("models %+v", tg.Models)
	}
	if tg.ModelFor("CODE_COMPLETIONS") != "duo-confidential-small" || tg.ModelFor("CODE_GENERATIONS") != "duo-confidential-big" || tg.ModelFor("DUO_AGENT_PLATFORM") != "duo-confidential-big" {
		t.Errorf("routes %v", tg.Routes)
	}

	cfg.TLS.Source = apptls.SourceOff
	cfg.GitLabAdmin.ModelEndpoint = "http://10.0.0.5:8080/v1"
	cfg.GitLabAdmin.AgentPlatformAddress = "duo.example.com:50052"
	cfg.Gateway.Timeouts.Chat = 20 * time.Minute
	tg, err = GitLabTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tg.GatewayURL != "http://duo.example.com:5052" || tg.Models[0].Endpoint != "http://10.0.0.5:8080/v1" || tg.AgentPlatformTLS || tg.TimeoutSeconds != 600 {
		t.Errorf("target %+v", tg)
	}

	cfg.Gateway.GitLabURL = ""
	if _, err := GitLabTarget(cfg); err == nil || !strings.Contains(err.Error(), "gateway.gitlab_url") {
		t.Errorf("without a gateway: %v", err)
	}
}

func TestGitLabWatchWithoutTokenSaysWhat(t *testing.T) {
	cfg := gitlabConfig(t)
	if w := newGitLabWatch(cfg, nil, nil, nil); w != nil {
		t.Fatal("a watch without gitlab_admin.watch")
	}
	cfg.GitLabAdmin.Watch = true
	w := newGitLabWatch(cfg, nil, nil, nil)
	r := w.report()
	if r == nil || !strings.Contains(r.Err, "gitlab connect --apply --watch") || r.OK() {
		t.Fatalf("report %+v", r)
	}
}
