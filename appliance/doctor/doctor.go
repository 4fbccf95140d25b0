package doctor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
)

// Options is what a run needs from its caller: where the configuration is
// and how to load it, and the command line's choices.
type Options struct {
	// ConfigPath is the configuration file in effect, named in the report.
	ConfigPath string
	// LoadConfig loads and validates the configuration exactly as `config
	// check` does; found reports whether the file existed (false: defaults).
	LoadConfig func() (cfg *config.Config, found bool, err error)
	// Sandbox, when set, is a sandbox directory to attest instead of the
	// configured Privatemode endpoint (SANDBOX MODE, NOT CONFIDENTIAL).
	Sandbox string
	// LoadSandbox reads Sandbox: the backend and the API key it accepts.
	LoadSandbox func(dir string) (*appliance.Sandbox, string, error)
	// ProxyToken is the proxy's inbound token, for the completion round trip.
	ProxyToken string
	// Offline skips the checks that use the network.
	Offline bool
	// JSON prints a JSON array of results instead of the report.
	JSON bool
	// Stdout receives the report.
	Stdout io.Writer
}

// env is what the checks share: the loaded configuration (set by the
// config check) and whose files the state should be.
type env struct {
	o   Options
	now time.Time
	cfg *config.Config // nil until the config check passes

	owner owner
}

// owner is the user the appliance's files must belong to.
type owner struct {
	uid, gid int
	name     string
	// self: doctor runs as that user, so it can try writing.
	self bool
}

// Run runs every check and prints the report; any FAIL makes it return
// Failed (exit status 1), WARN and SKIP do not (a fresh install with
// nothing configured yet passes with warnings).
func Run(ctx context.Context, o Options) error {
	e := &env{o: o, now: time.Now(), owner: serviceOwner()}
	results := runChecks(ctx, e.checks(), o.Offline)
	var err error
	if o.JSON {
		err = writeJSON(o.Stdout, results)
	} else {
		err = writeText(o.Stdout, results)
	}
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if n := summary(results)[statusFail]; n > 0 {
		return Failed{n}
	}
	return nil
}

// checks lists the checks in the order an admin fixes things: the
// configuration, the files, TLS, GitLab's keys, attestation, then the
// running appliance as a client and as GitLab see it.
func (e *env) checks() []doctorCheck {
	cfg := []string{"config"}
	return []doctorCheck{
		{name: "config", run: e.checkConfig},
		{name: "state-dir", needs: cfg, run: e.checkStateDir},
		{name: "key-files", needs: cfg, run: e.checkKeyFiles},
		{name: "tls", needs: cfg, run: e.checkTLS},
		{name: "tls-proxy", needs: cfg, online: true, run: e.checkHandshake(e.proxyAddr)},
		{name: "tls-gateway", needs: cfg, online: true, applies: e.gatewayOn(statusSkip), run: e.checkHandshake(e.gatewayAddr)},
		{name: "gitlab-keys", needs: cfg, online: true, applies: e.gatewayOn(statusWarn), timeout: 30 * time.Second, run: e.checkGitLabKeys},
		{name: "collateral", needs: cfg, run: e.checkCollateral},
		{name: "trust-log", needs: cfg, run: e.checkTrustLog},
		{name: "receipts", needs: cfg, run: e.checkReceipts},
		{name: "attestation", needs: cfg, online: true, applies: e.attestationApplies, timeout: 2 * time.Minute, run: e.checkAttestation},
		{name: "proxy-ready", needs: []string{"tls-proxy"}, online: true, run: e.checkProxyReady},
		{name: "proxy-models", needs: []string{"proxy-ready"}, online: true, applies: e.proxyTokenKnown, run: e.checkProxyModels},
		{name: "proxy-completion", needs: []string{"proxy-ready"}, online: true, applies: e.proxyTokenKnown, timeout: time.Minute, run: e.checkProxyCompletion},
		{name: "gateway-host", needs: []string{"tls-gateway"}, online: true, run: e.checkGatewayHost},
		{name: "gateway-healthz", needs: []string{"tls-gateway"}, online: true, run: e.checkGatewayHealthz},
		{name: "gateway-ready", needs: []string{"tls-gateway"}, online: true, run: e.checkGatewayReady},
		{name: "agent-tls", needs: cfg, online: true, applies: e.agentOn, run: e.checkAgentSystemRoots},
		{name: "agent-listtools", needs: cfg, online: true, applies: e.agentOn, timeout: 30 * time.Second, run: e.checkAgentListTools},
		{name: "gitlab-probes", needs: cfg, applies: e.gatewayOn(statusSkip), run: e.checkGitLabProbes},
	}
}

// ExpectedOwner names the user the state directory's files must belong
// to, as the checks judge it (the report says "owner NAME").
func ExpectedOwner() string { return serviceOwner().name }

// serviceOwner is whose files the state should be: the user running
// doctor, or, for root, the service user the packages create.
func serviceOwner() owner {
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		if u, err := user.Lookup(ServiceUser); err == nil {
			o := owner{name: ServiceUser}
			o.uid, _ = strconv.Atoi(u.Uid)
			o.gid, _ = strconv.Atoi(u.Gid)
			return o
		}
		return owner{uid: 0, gid: 0, name: "root", self: true}
	}
	o := owner{uid: uid, gid: gid, name: "uid " + strconv.Itoa(uid), self: true}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		o.name = u.Username
	}
	return o
}
