package main

import (
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/appliance/doctor"
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

// Run runs every check (package doctor) and prints the report; any FAIL
// makes the exit status 1, WARN and SKIP do not.
func (c *DoctorCmd) Run(g *Globals) error {
	path, named := g.ConfigPath(), g.Config != ""
	return doctor.Run(g.Context(), doctor.Options{
		ConfigPath:  path,
		LoadConfig:  func() (*config.Config, bool, error) { return g.loadConfigFile(path, named) },
		Sandbox:     c.Sandbox,
		LoadSandbox: loadSandboxDir,
		ProxyToken:  c.ProxyToken,
		Offline:     c.Offline,
		JSON:        c.JSON,
		Stdout:      g.stdout(),
	})
}
