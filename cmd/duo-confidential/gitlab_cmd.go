package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
)

// GitLabCmd groups the commands that use GitLab's admin API.
type GitLabCmd struct {
	Connect GitLabConnectCmd `cmd:"" help:"Point GitLab Duo Self-Hosted at this appliance through GitLab's admin API: --plan shows what would change, --apply changes it and verifies."`
	Verify  GitLabVerifyCmd  `cmd:"" help:"Check GitLab's Duo configuration against this appliance (connection check per model, cloudConnectorStatus, feature assignments); changes nothing."`
}

// gitlabToken is how the admin token reaches a command: a file or the
// terminal, never a flag value (which would land in shell history and ps).
type gitlabToken struct {
	TokenFile string `help:"File holding a GitLab administrator's personal access token (scope api), mode 0600; - reads it from standard input. Without it the token is asked for on the terminal." placeholder:"PATH"`

	in io.Reader // nil: os.Stdin (tests set it)
}

// applianceView reads the running appliance's count of GitLab's
// connection checks (its /metrics on the admin listener), so connect and
// verify can show that GitLab's checks really reached this appliance.
type applianceView struct {
	AdminTokenFile string `help:"File holding an admin API token (mode 0600) to read the running appliance's /metrics; not needed with admin.metrics_auth: none." placeholder:"PATH"`
}

// count returns the running appliance's count, or why it is not known.
func (v applianceView) count(g *Globals, cfg *config.Config) (uint64, error) {
	tok := ""
	if v.AdminTokenFile != "" {
		t, err := gitlabconnect.ReadToken(v.AdminTokenFile)
		if err != nil {
			return 0, fmt.Errorf("admin token: %w", err)
		}
		tok = t
	}
	return appliance.RunningGatewayChecks(g.Context(), cfg, tok)
}

// write prints the count GitLab's checks added since before, or SKIP with
// the reason when the running appliance could not be read.
func (v applianceView) write(g *Globals, cfg *config.Config, before uint64, beforeErr error, want int) {
	after, err := v.count(g, cfg)
	if err == nil {
		err = beforeErr
	}
	if err != nil {
		fmt.Fprintf(g.stdout(), "\nSKIP: the appliance's own count of GitLab's connection checks: %v\n", err)
		return
	}
	appliance.WriteGatewayChecks(g.stdout(), after-before, want)
}

// connectionChecks is how many of GitLab's connection checks verify ran.
func connectionChecks(v *gitlabconnect.Verification) int {
	n := 0
	for _, c := range v.Checks {
		if strings.HasPrefix(c.Name, "connection check ") {
			n++
		}
	}
	return n
}

// read returns the token; it is never printed or logged.
func (t *gitlabToken) read(g *Globals) (string, error) {
	switch {
	case t.TokenFile == "-":
		in := t.in
		if in == nil {
			in = os.Stdin
		}
		line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the token from standard input: %w", err)
		}
		if tok := strings.TrimSpace(line); tok != "" {
			return tok, nil
		}
		return "", errors.New("standard input held no token")
	case t.TokenFile != "":
		return gitlabconnect.ReadToken(t.TokenFile)
	}
	fd := int(os.Stdin.Fd())
	if t.in != nil || !term.IsTerminal(fd) {
		return "", errors.New("no GitLab token: pass --token-file PATH (mode 0600, or - for standard input), or run on a terminal to be asked for it")
	}
	fmt.Fprint(g.stderr(), "GitLab administrator's personal access token (scope api): ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(g.stderr())
	if err != nil {
		return "", fmt.Errorf("read the token: %w", err)
	}
	if tok := strings.TrimSpace(string(b)); tok != "" {
		return tok, nil
	}
	return "", errors.New("no token entered")
}

// GitLabConnectCmd configures GitLab through its admin API.
type GitLabConnectCmd struct {
	gitlabToken
	applianceView
	Plan  bool `help:"Show what would change in GitLab and change nothing (the default)." xor:"mode"`
	Apply bool `help:"Make the changes, record GitLab's ids in the state directory, then verify." xor:"mode"`
	Watch bool `help:"With --apply: keep the token (0600, gitlab_admin.token_file or the state directory) so the running appliance watches GitLab for drift (gitlab_admin.watch: true)."`
	JSON  bool `name:"json" help:"Print the plan, result and verification as JSON."`
}

// connectJSON is --json's document.
type connectJSON struct {
	Plan         *gitlabconnect.Plan         `json:"plan"`
	Result       *gitlabconnect.Result       `json:"result,omitempty"`
	Error        string                      `json:"error,omitempty"`
	Verification *gitlabconnect.Verification `json:"verification,omitempty"`
	TokenKept    string                      `json:"token_kept,omitempty"`
}

// Run plans or applies and prints the report; a closed gate, a failed
// change or a failed verification is exit status 1.
func (c *GitLabConnectCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return fmt.Errorf("gitlab connect: %w", err)
	}
	if c.Watch && !c.Apply {
		return errors.New("gitlab connect: --watch keeps the token for the drift watch and needs --apply")
	}
	token, err := c.read(g)
	if err != nil {
		return fmt.Errorf("gitlab connect: %w", err)
	}
	before, beforeErr := c.count(g, cfg)
	out, err := appliance.GitLabConnector{Config: cfg}.Connect(g.Context(), token, appliance.ConnectOptions{Apply: c.Apply, KeepToken: c.Watch})
	if err != nil {
		var gate *gitlabconnect.GateError
		if errors.As(err, &gate) {
			return fmt.Errorf("gitlab connect: nothing was changed: %s\n  fix: %s", gate.Problem, gate.Fix)
		}
		if out == nil {
			return fmt.Errorf("gitlab connect: nothing was changed: %w", err)
		}
		return fmt.Errorf("gitlab connect: %w", err)
	}
	if c.JSON {
		doc := connectJSON{Plan: out.Plan, Result: out.Result, Verification: out.Verification, TokenKept: out.TokenKept}
		if out.Result != nil && out.Result.Err != nil {
			doc.Error = out.Result.Err.Error()
		} else if out.VerifyErr != nil {
			doc.Error = out.VerifyErr.Error()
		}
		enc := json.NewEncoder(g.stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		out.WriteText(g.stdout(), cfg.GitLabAdmin.Watch)
		if out.Verification != nil {
			c.write(g, cfg, before, beforeErr, connectionChecks(out.Verification))
		}
	}
	if !out.OK() {
		return errors.New("gitlab connect: not every change was made and verified (see above); run it again once the cause is fixed")
	}
	return nil
}

// GitLabVerifyCmd checks GitLab without changing it.
type GitLabVerifyCmd struct {
	gitlabToken
	applianceView
	JSON bool `name:"json" help:"Print the checks and drift findings as JSON."`
}

// Run prints GitLab's checks and the drift findings; exit status 1 unless
// everything passed.
func (c *GitLabVerifyCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return fmt.Errorf("gitlab verify: %w", err)
	}
	token, err := c.read(g)
	if err != nil {
		return fmt.Errorf("gitlab verify: %w", err)
	}
	before, beforeErr := c.count(g, cfg)
	v, err := appliance.GitLabConnector{Config: cfg}.Verify(g.Context(), token)
	if err != nil {
		var gate *gitlabconnect.GateError
		if errors.As(err, &gate) {
			return fmt.Errorf("gitlab verify: %s\n  fix: %s", gate.Problem, gate.Fix)
		}
		return fmt.Errorf("gitlab verify: %w", err)
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		gitlabconnect.WriteVerification(g.stdout(), v)
		c.write(g, cfg, before, beforeErr, connectionChecks(v))
	}
	if !v.OK() {
		return errors.New("gitlab verify: GitLab is not (fully) connected to this appliance; `duo-confidential gitlab connect --plan` shows what to change")
	}
	return nil
}
