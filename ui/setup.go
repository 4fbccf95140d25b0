package ui

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// setupView is the GitLab setup page: what to enter where, and the checks
// GitLab will run.
type setupView struct {
	Enabled     bool
	GitLabURL   string
	GatewayURL  string
	ProxyURL    string
	HostWarning string
	// ProxyWarning is set when GitLab's model probe cannot reach the proxy.
	ProxyWarning string
	ProxyTokens  bool
	Models       []setupModel
	Features     []setupFeature
	Checks       []setupCheck
	ChatTimeout  string
	// GitLabTimeout is the smallest AI gateway timeout to set in GitLab.
	GitLabTimeout string
	CheckTimeout  string
	Allowed       []string
	// AgentURL is the Duo Agent Platform service URL (HOST:PORT, no
	// scheme), "" when the Agent Platform is not served.
	AgentURL     string
	AgentWarning string
	AgentModel   string
	AgentWindow  int
	AgentSecure  bool
}

// setupModel is one "Add self-hosted model" entry.
type setupModel struct {
	ID, Identifier string
	Used           []string // feature groups it serves
}

// setupFeature is one row of GitLab's AI-native features list.
type setupFeature struct {
	Feature, Route, Key, Model string
}

// setupCheck is one of GitLab's checks, run now against this appliance.
type setupCheck struct {
	Name, GitLab string // what we ran, and which GitLab check runs it
	OK           bool
	Detail       string
}

// setupView derives the page from the configuration and the host name the
// admin reached this page with (the listeners' own address is often
// 0.0.0.0, which GitLab cannot use).
func (s *Server) setupView(ctx *fasthttp.RequestCtx) *setupView {
	if s.o.Sources.Setup == nil {
		return &setupView{}
	}
	su := s.o.Sources.Setup()
	v := &setupView{Enabled: su.GatewayEnabled, GitLabURL: su.GitLabURL, ProxyTokens: su.ProxyTokens, Allowed: su.AllowedModels,
		ChatTimeout: su.ChatTimeout.String(), CheckTimeout: su.CheckTimeout.String()}
	v.GitLabTimeout = fmt.Sprintf("%d", max(60, int(su.ChatTimeout.Seconds())+10))
	host := hostOf(string(ctx.Host()))
	scheme := "http"
	if su.HTTPS {
		scheme = "https"
	}
	gwHost, gwPort := splitListen(su.GatewayListen, host)
	pxHost, pxPort := splitListen(su.ProxyListen, host)
	v.GatewayURL = scheme + "://" + net.JoinHostPort(gwHost, gwPort)
	v.ProxyURL = scheme + "://" + net.JoinHostPort(pxHost, pxPort)
	if isLoopbackHost(gwHost) {
		v.HostWarning = "The gateway URL below names this machine's loopback address (" + gwHost + "). GitLab's Rails and Sidekiq nodes cannot reach it: set gateway.listen to an address GitLab reaches (e.g. 0.0.0.0:5052) and open this page through the appliance's real host name."
	}
	if isLoopbackHost(pxHost) {
		v.ProxyWarning = "proxy.listen is a loopback address, so GitLab's gitlab:duo:verify_self_hosted_setup task cannot probe <endpoint>/v1/models from Rails (the gateway itself does not need it). To pass that check, listen on a reachable address; that requires proxy.inbound_token_sha256."
	}
	if su.AgentPlatformListen != "" {
		agHost, agPort := splitListen(su.AgentPlatformListen, host)
		v.AgentURL = net.JoinHostPort(agHost, agPort)
		v.AgentModel, v.AgentWindow, v.AgentSecure = su.Models.DuoChat, su.AgentContextWindow, su.HTTPS
		if isLoopbackHost(agHost) {
			v.AgentWarning = "agent_platform.listen is a loopback address: GitLab's Rails and Workhorse cannot reach it. Set it to an address GitLab reaches (e.g. 0.0.0.0:50052)."
		}
	}
	m := su.Models
	v.Features = []setupFeature{
		{"Code Suggestions: code completion", "POST /v2/code/completions", "code_completions", m.CodeCompletions},
		{"Code Suggestions: code generation", "POST /v3/code/completions, POST /v4/code/suggestions", "code_generations", m.CodeGenerations},
		{"GitLab Duo Chat (general chat)", "POST /v2/chat/agent", "duo_chat", m.DuoChat},
		{"Chat: explain code, write tests, refactor, fix, troubleshoot job, summarize comments, explain vulnerability", "POST /v1/prompts/chat/<tool>", "default", m.Default},
		{"Commit message, MR summary, code review, review summary, description, vulnerability resolution, glab duo ask", "POST /v1/prompts/<feature>", "default", m.Default},
	}
	byID := map[string]*setupModel{}
	var order []string
	for _, f := range v.Features {
		if f.Model == "" {
			continue
		}
		if byID[f.Model] == nil {
			byID[f.Model] = &setupModel{ID: f.Model, Identifier: "custom_openai/" + f.Model}
			order = append(order, f.Model)
		}
		if !slices.Contains(byID[f.Model].Used, f.Key) {
			byID[f.Model].Used = append(byID[f.Model].Used, f.Key)
		}
	}
	for _, id := range order {
		v.Models = append(v.Models, *byID[id])
	}
	if su.GatewayEnabled {
		v.Checks = s.runChecks(su)
	}
	return v
}

// runChecks runs, in parallel, what GitLab's checks run.
func (s *Server) runChecks(su Setup) []setupCheck {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	checks := []func(context.Context) setupCheck{
		func(ctx context.Context) setupCheck {
			c := setupCheck{Name: "HEAD <gateway URL>", GitLab: "Admin → GitLab Duo → Run health check (host probe: any HTTP answer passes)"}
			code, err := s.probeStatus(ctx, http.MethodHead, su.GatewayProbe+"/")
			c.OK, c.Detail = err == nil, answered(code, err)
			return c
		},
		func(ctx context.Context) setupCheck {
			c := setupCheck{Name: "GET /monitoring/healthz", GitLab: "gitlab-rake gitlab:duo:verify_self_hosted_setup (needs HTTP 200)"}
			code, err := s.probeStatus(ctx, http.MethodGet, su.GatewayProbe+"/monitoring/healthz")
			c.OK, c.Detail = err == nil && code == http.StatusOK, answered(code, err)
			return c
		},
		func(ctx context.Context) setupCheck {
			c := setupCheck{Name: "GET <endpoint>/v1/models", GitLab: "gitlab-rake gitlab:duo:verify_self_hosted_setup, from Rails with the model's API key (status < 400 passes)"}
			code, err := s.probeStatus(ctx, http.MethodGet, su.ProxyProbe+"/v1/models")
			c.OK, c.Detail = err == nil && code < 400, answered(code, err)
			if code == http.StatusUnauthorized && su.ProxyTokens {
				c.OK, c.Detail = true, "HTTP 401 without a token, as expected: enter a proxy token as the self-hosted model's API key"
			}
			return c
		},
		func(ctx context.Context) setupCheck {
			c := setupCheck{Name: "POST /v1/prompts/model_configuration%2Fcheck", GitLab: "Self-hosted models → Test connection (HTTP 200 within 3 s)"}
			if s.o.Sources.TestConnection == nil {
				c.Detail = "not available"
				return c
			}
			model, took, err := s.o.Sources.TestConnection(ctx)
			switch {
			case err != nil:
				c.Detail = "model " + model + ": " + err.Error()
			case took >= 3*time.Second:
				c.Detail = fmt.Sprintf("model %s answered after %s; GitLab gives up after 3 s", model, took.Round(time.Millisecond))
			default:
				c.OK, c.Detail = true, fmt.Sprintf("model %s answered in %s", model, took.Round(time.Millisecond))
			}
			return c
		},
		func(ctx context.Context) setupCheck {
			c := setupCheck{Name: "GET /monitoring/ready", GitLab: "not called by GitLab; the appliance's own readiness"}
			code, body, err := s.probe200(ctx, su.GatewayProbe+"/monitoring/ready")
			c.OK, c.Detail = err == nil && code == http.StatusOK, answered(code, err)
			if !c.OK && body != "" {
				c.Detail += ": " + body
			}
			return c
		},
	}
	out := make([]setupCheck, len(checks))
	var wg sync.WaitGroup
	for i, f := range checks {
		wg.Go(func() { out[i] = f(ctx) })
	}
	wg.Wait()
	return out
}

func (s *Server) probeStatus(ctx context.Context, method, url string) (int, error) {
	code, _, err := s.do(ctx, method, url)
	return code, err
}

func (s *Server) probe200(ctx context.Context, url string) (int, string, error) {
	return s.do(ctx, http.MethodGet, url)
}

func (s *Server) do(ctx context.Context, method, url string) (int, string, error) {
	if strings.HasPrefix(url, "/") {
		return 0, "", fmt.Errorf("the listener is not running")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.probe.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func answered(code int, err error) string {
	if err != nil {
		return "no answer: " + err.Error()
	}
	return fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
}

// hostOf strips the port from a Host header.
func hostOf(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}

// splitListen returns the host GitLab should use for a listener: its own
// host unless it listens on every address, then the host the admin used.
func splitListen(listen, fallback string) (string, string) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fallback, listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = fallback
	}
	return host, port
}

func isLoopbackHost(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
