package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
)

// DoctorCmd checks an installation from the appliance's side: what GitLab's
// `gitlab:duo:verify_self_hosted_setup` and Admin health check probe, plus
// the state, trust and TLS the appliance depends on.
type DoctorCmd struct {
	JSON       bool   `name:"json" help:"Print a JSON array of results (name, status, detail, fix) instead of the report."`
	Offline    bool   `help:"Skip the checks that use the network: the running appliance, GitLab and Privatemode."`
	ProxyToken string `name:"proxy-token" env:"DUO_CONFIDENTIAL_PROXY_TOKEN" placeholder:"TOKEN" help:"Inbound token of the proxy (when proxy.inbound_token_sha256 is set), for the completion round trip."`
	Sandbox    string `help:"SANDBOX MODE (NOT CONFIDENTIAL): attest the sandbox in DIR (as 'serve --sandbox DIR' does) instead of the configured Privatemode endpoint." type:"existingdir" placeholder:"DIR"`
}

// doctorEnv is what the checks share: the loaded configuration (set by the
// config check) and whose files the state should be.
type doctorEnv struct {
	g   *Globals
	c   *DoctorCmd
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

// Run runs every check and prints the report; any FAIL makes the exit
// status 1, WARN and SKIP do not (a fresh install with nothing configured
// yet passes with warnings).
func (c *DoctorCmd) Run(g *Globals) error {
	e := &doctorEnv{g: g, c: c, now: time.Now(), owner: serviceOwner()}
	results := runChecks(g.Context(), e.checks(), c.Offline)
	var err error
	if c.JSON {
		err = writeDoctorJSON(g.stdout(), results)
	} else {
		err = writeDoctorText(g.stdout(), results)
	}
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if n := doctorSummary(results)[statusFail]; n > 0 {
		return doctorFailed{n}
	}
	return nil
}

// checks lists the checks in the order an admin fixes things: the
// configuration, the files, TLS, GitLab's keys, attestation, then the
// running appliance as a client and as GitLab see it.
func (e *doctorEnv) checks() []doctorCheck {
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
		{name: "attestation", needs: cfg, online: true, applies: e.attestationApplies, timeout: 2 * time.Minute, run: e.checkAttestation},
		{name: "proxy-ready", needs: []string{"tls-proxy"}, online: true, run: e.checkProxyReady},
		{name: "proxy-models", needs: []string{"proxy-ready"}, online: true, applies: e.proxyTokenKnown, run: e.checkProxyModels},
		{name: "proxy-completion", needs: []string{"proxy-ready"}, online: true, applies: e.proxyTokenKnown, timeout: time.Minute, run: e.checkProxyCompletion},
		{name: "gateway-host", needs: []string{"tls-gateway"}, online: true, run: e.checkGatewayHost},
		{name: "gateway-healthz", needs: []string{"tls-gateway"}, online: true, run: e.checkGatewayHealthz},
		{name: "gateway-ready", needs: []string{"tls-gateway"}, online: true, run: e.checkGatewayReady},
		{name: "gitlab-probes", needs: cfg, applies: e.gatewayOn(statusSkip), run: e.checkGitLabProbes},
	}
}

// serviceOwner is whose files the state should be: the user running
// doctor, or, for root, the service user the packages create.
func serviceOwner() owner {
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		if u, err := user.Lookup(config.ServiceUser); err == nil {
			o := owner{name: config.ServiceUser}
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
