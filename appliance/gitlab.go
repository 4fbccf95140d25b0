package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// connectTimeout bounds one connect (plan, apply and verify) from the CLI
// or the admin UI; each GitLab call has its own, shorter limit.
const connectTimeout = 5 * time.Minute

// GitLabTarget derives what `gitlab connect` points GitLab at: the gateway
// URL and model endpoint (gitlab_admin.*, else from tls.names or this
// host's name and the listeners' ports), one model record per distinct
// model of gateway.models, and the feature routes.
func GitLabTarget(cfg *config.Config) (gitlabconnect.Target, error) {
	g := cfg.Gateway
	if !g.Enabled() {
		return gitlabconnect.Target{}, errors.New("the gateway is not configured: set gateway.gitlab_url and gateway.models first")
	}
	scheme := "https"
	if cfg.TLS.Source == apptls.SourceOff {
		scheme = "http"
	}
	t := gitlabconnect.Target{
		GatewayURL:        cfg.GitLabAdmin.GatewayURL,
		AgentPlatformAddr: cfg.GitLabAdmin.AgentPlatformAddress,
		AgentPlatformTLS:  scheme == "https",
		TimeoutSeconds:    min(600, max(60, int(g.Timeouts.Chat.Seconds())+10)),
		Routes:            map[string]string{},
	}
	if t.GatewayURL == "" {
		t.GatewayURL = scheme + "://" + publicAddr(cfg, g.Listen)
	}
	// GitLab's Agent Platform URL is host:port without a scheme; when the
	// appliance serves the Agent Platform, point GitLab at it (an empty
	// address would tell connect to turn GitLab's Agent Platform off).
	// GitLab reaches it on the host it reaches the gateway on.
	if t.AgentPlatformAddr == "" && cfg.AgentPlatformEnabled() {
		t.AgentPlatformAddr = publicAddr(cfg, cfg.AgentPlatform.Listen)
		if u, err := url.Parse(t.GatewayURL); err == nil && u.Hostname() != "" {
			if _, port, err := net.SplitHostPort(cfg.AgentPlatform.Listen); err == nil {
				t.AgentPlatformAddr = net.JoinHostPort(u.Hostname(), port)
			}
		}
	}
	endpoint := cfg.GitLabAdmin.ModelEndpoint
	if endpoint == "" {
		endpoint = scheme + "://" + publicAddr(cfg, cfg.Proxy.Listen) + "/v1"
	}
	orDefault := func(id string) string {
		if id == "" {
			return g.Models.Default
		}
		return id
	}
	name := func(id string) string { return "duo-confidential-" + id }
	seen := map[string]bool{}
	for _, id := range []string{g.Models.Default, orDefault(g.Models.DuoChat), orDefault(g.Models.CodeGenerations), orDefault(g.Models.CodeCompletions)} {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		t.Models = append(t.Models, gitlabconnect.Model{Name: name(id), Endpoint: endpoint, Identifier: "custom_openai/" + id, Family: cfg.GitLabAdmin.ModelFamily})
	}
	t.Routes["CODE_COMPLETIONS"] = name(orDefault(g.Models.CodeCompletions))
	t.Routes["CODE_GENERATIONS"] = name(orDefault(g.Models.CodeGenerations))
	t.Routes["DUO_CHAT"] = name(orDefault(g.Models.DuoChat))
	if _, err := t.Check(); err != nil {
		return t, err
	}
	return t, nil
}

// publicAddr is host:port of a listener as GitLab should reach it: the
// first tls.names entry, else the listen host unless it is unspecified,
// else this machine's host name.
func publicAddr(cfg *config.Config, listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch ip := net.ParseIP(host); {
	case len(cfg.TLS.Names) > 0:
		host = cfg.TLS.Names[0]
	case host == "" || (ip != nil && ip.IsUnspecified()):
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// GitLabConnector runs `gitlab connect` for a configuration; the CLI and
// the admin UI share it.
type GitLabConnector struct {
	Config *config.Config
	// HTTPClient carries the GitLab calls; nil builds the outbound client
	// (trust store, HTTPS_PROXY; per-call time limits, no overall one).
	HTTPClient *http.Client
}

// ConnectOptions selects what Connect does.
type ConnectOptions struct {
	// Apply makes the changes and then verifies; otherwise only the plan.
	Apply bool
	// KeepToken stores the token for the drift watch (0600, in
	// gitlab_admin.token_file or the state directory).
	KeepToken bool
}

// ConnectOutcome is what one connect found and did.
type ConnectOutcome struct {
	Plan         *gitlabconnect.Plan
	Result       *gitlabconnect.Result       // nil for a plan
	Verification *gitlabconnect.Verification // nil for a plan, or when apply stopped
	VerifyErr    error
	// TokenKept is the file the token went to (KeepToken).
	TokenKept string
}

// OK reports whether everything planned happened and verified.
func (o *ConnectOutcome) OK() bool {
	if o.Result == nil {
		return true
	}
	return !o.Result.Failed() && o.VerifyErr == nil && o.Verification != nil && o.Verification.OK()
}

// WriteText prints the outcome as the CLI shows it.
func (o *ConnectOutcome) WriteText(w io.Writer, watching bool) {
	if o.Result == nil {
		gitlabconnect.WritePlan(w, o.Plan)
		if !o.Plan.NoOp() {
			fmt.Fprintln(w, "\nRun again with --apply (or Apply on the admin UI) to make these changes.")
		}
		return
	}
	fmt.Fprintf(w, "GitLab %s (%s) as %s\n\n", o.Plan.Instance.URL, o.Plan.Instance.Version, o.Plan.Instance.Username)
	gitlabconnect.WriteResult(w, o.Result)
	if o.Verification != nil {
		fmt.Fprintln(w)
		gitlabconnect.WriteVerification(w, o.Verification)
	} else if o.VerifyErr != nil {
		fmt.Fprintf(w, "\nVerify: %v\n", o.VerifyErr)
	}
	gitlabconnect.WriteManual(w, o.Plan.Manual)
	switch {
	case o.TokenKept != "" && watching:
		fmt.Fprintf(w, "\nThe token is kept in %s (0600) for the drift watch.\n", o.TokenKept)
	case o.TokenKept != "":
		fmt.Fprintf(w, "\nThe token is kept in %s (0600). Set gitlab_admin.watch: true and restart to watch GitLab for drift.\n", o.TokenKept)
	}
}

func (g GitLabConnector) client(token string) (*gitlabconnect.Client, error) {
	hc := g.HTTPClient
	if hc == nil {
		var err error
		if hc, err = g.Config.OutboundStreamClient(); err != nil {
			return nil, err
		}
	}
	return gitlabconnect.NewClient(gitlabconnect.ClientOptions{GitLabURL: g.Config.Gateway.GitLabURL, Token: token, HTTPClient: hc})
}

// Connect plans and, with Apply, applies, records GitLab's ids in the
// state directory and verifies. A closed preflight gate is an error
// (*gitlabconnect.GateError) and changes nothing.
func (g GitLabConnector) Connect(ctx context.Context, token string, o ConnectOptions) (*ConnectOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	t, err := GitLabTarget(g.Config)
	if err != nil {
		return nil, err
	}
	c, err := g.client(token)
	if err != nil {
		return nil, err
	}
	statePath := g.Config.GitLabConnectStatePath()
	st, err := gitlabconnect.LoadState(statePath)
	if err != nil {
		return nil, err
	}
	if st.GitLabURL != "" && st.GitLabURL != c.GitLabURL() {
		st = &gitlabconnect.State{} // another GitLab: its ids mean nothing here
	}
	p, err := c.Plan(ctx, t, st.IDs())
	if err != nil {
		return nil, err
	}
	out := &ConnectOutcome{Plan: p}
	if !o.Apply {
		return out, nil
	}
	out.Result = c.Apply(ctx, p, t)
	st.Record(c.GitLabURL(), p, out.Result)
	if err := st.Save(statePath); err != nil {
		return out, err
	}
	if o.KeepToken {
		path := g.Config.GitLabAdminTokenPath()
		if err := gitlabconnect.SaveToken(path, token); err != nil {
			return out, err
		}
		out.TokenKept = path
	}
	if out.Result.Err == nil {
		out.Verification, out.VerifyErr = c.Verify(ctx, t, st.IDs(), st.Managed())
	}
	return out, nil
}

// gitlabWatch is the running drift watch.
type gitlabWatch struct {
	watcher *gitlabconnect.Watcher // nil when it cannot run (Err says why)
	last    atomic.Pointer[gitlabconnect.Report]
	err     string
}

// newGitLabWatch sets up the drift watch when gitlab_admin.watch is on. A
// missing token does not stop the start: the watch reports it instead.
func newGitLabWatch(cfg *config.Config, hc *http.Client, log *slog.Logger, record func(*gitlabconnect.Report)) *gitlabWatch {
	if !cfg.GitLabAdmin.Watch || !cfg.Gateway.Enabled() {
		return nil
	}
	w := &gitlabWatch{}
	token, err := gitlabconnect.ReadToken(cfg.GitLabAdminTokenPath())
	if err != nil {
		w.err = fmt.Sprintf("%v: run `duo-confidential gitlab connect --apply --watch` (or Apply with \"keep watching\" on the admin UI's GitLab page)", err)
		return w
	}
	t, err := GitLabTarget(cfg)
	if err == nil && hc == nil {
		hc, err = cfg.OutboundStreamClient()
	}
	var c *gitlabconnect.Client
	if err == nil {
		c, err = gitlabconnect.NewClient(gitlabconnect.ClientOptions{GitLabURL: cfg.Gateway.GitLabURL, Token: token, HTTPClient: hc})
	}
	statePath := cfg.GitLabConnectStatePath()
	if err == nil {
		w.watcher, err = gitlabconnect.NewWatcher(gitlabconnect.WatchOptions{
			Client: c, Target: t, Interval: cfg.GitLabAdmin.PollInterval, AutoRepair: cfg.GitLabAdmin.AutoRepair,
			State: func() *gitlabconnect.State {
				st, err := gitlabconnect.LoadState(statePath)
				if err != nil {
					log.Warn("GitLab drift watch: state file", "error", err)
					return &gitlabconnect.State{}
				}
				return st
			},
			OnReport: func(r *gitlabconnect.Report) {
				w.last.Store(r)
				if record != nil {
					record(r)
				}
			},
			Logger: log.With("part", "gitlab-watch"),
		})
	}
	if err != nil {
		w.err = err.Error()
	}
	return w
}

// run polls until ctx ends.
func (w *gitlabWatch) run(ctx context.Context) {
	if w != nil && w.watcher != nil {
		go w.watcher.Run(ctx)
	}
}

// report is the latest report, or one carrying why the watch cannot run.
func (w *gitlabWatch) report() *gitlabconnect.Report {
	if w == nil {
		return nil
	}
	if w.err != "" {
		return &gitlabconnect.Report{Err: w.err, Counts: map[string]int{}}
	}
	return w.last.Load()
}

// pollNow looks at GitLab now (after a connect), so the report matches
// what connect just did.
func (w *gitlabWatch) pollNow(ctx context.Context) {
	if w != nil && w.watcher != nil {
		w.watcher.Poll(ctx)
	}
}

// recordGitLab puts what the drift watch found into the trust log: an entry
// when GitLab starts or stops sending something elsewhere (the same state
// seen again adds nothing). An unreadable GitLab is not recorded: nothing is
// known then.
func (a *Appliance) recordGitLab(r *gitlabconnect.Report) {
	if a.trustLog == nil || r.Err != "" {
		return
	}
	detail := fmt.Sprintf("connected: %d features on this appliance's models, nothing drifted", r.Counts[gitlabconnect.StateOurs])
	if len(r.Problems) > 0 {
		var what []string
		for _, p := range r.Problems {
			what = append(what, p.What)
		}
		detail = fmt.Sprintf("drift: %d problems: %s", len(r.Problems), strings.Join(what, "; "))
	}
	if _, err := a.trustLog.AppendEvent(gitlabTrustEvent, detail, r.Checked); err != nil {
		a.log.Warn("trust log: cannot record the GitLab drift watch's finding", "error", err)
	}
}

// gitlabTrustEvent names the drift watch's trust log entries.
const gitlabTrustEvent = "gitlab"

// gatewayChecks counts the gateway's successful answers to GitLab's
// connection check, from the metrics registry.
func (a *Appliance) gatewayChecks() uint64 {
	fams, err := a.admin.registry.Gather()
	if err != nil {
		return 0
	}
	return gatewayCheckCount(fams)
}

// GitLabDrift is the drift watch's latest report; nil when the watch is
// off or has not polled yet.
func (a *Appliance) GitLabDrift() *gitlabconnect.Report { return a.gitlab.report() }

// ConnectGitLab runs connect for the admin UI, with the appliance's own
// GitLab client, and asks the drift watch to look again afterwards.
func (a *Appliance) ConnectGitLab(ctx context.Context, token string, o ConnectOptions) (string, bool, error) {
	before := a.gatewayChecks()
	out, err := GitLabConnector{Config: a.o.Config, HTTPClient: a.o.GitLabClient}.Connect(ctx, token, o)
	if err != nil {
		return "", false, err
	}
	var b strings.Builder
	out.WriteText(&b, a.gitlab != nil)
	if out.Verification != nil {
		// The appliance's own view of the calls GitLab just made.
		WriteGatewayChecks(&b, a.gatewayChecks()-before, len(out.Plan.Snapshot.Models))
	}
	if o.Apply {
		a.gitlab.pollNow(ctx) // the page shown next reflects what connect did
	}
	a.log.Info("admin: GitLab connect", "apply", o.Apply, "ok", out.OK(), "keep_token", o.KeepToken)
	return b.String(), out.OK(), nil
}

// Verify runs GitLab's checks and the drift rules without changing anything.
func (g GitLabConnector) Verify(ctx context.Context, token string) (*gitlabconnect.Verification, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	t, err := GitLabTarget(g.Config)
	if err != nil {
		return nil, err
	}
	c, err := g.client(token)
	if err != nil {
		return nil, err
	}
	st, err := gitlabconnect.LoadState(g.Config.GitLabConnectStatePath())
	if err != nil {
		return nil, err
	}
	return c.Verify(ctx, t, st.IDs(), st.Managed())
}
