// Command duo-confidential is the GitLab Duo confidential-computing appliance.
package main

import (
	"os"

	"github.com/alecthomas/kong"
)

// Globals are flags shared by every command. STUB (foundation helper owns this file).
type Globals struct {
	Config string `help:"Configuration file." default:"/etc/duo-confidential/config.yaml" type:"path"`
}

// CLI is the command tree.
type CLI struct {
	Globals
	Attest     AttestCmd     `cmd:"" help:"Attestation commands."`
	Collateral CollateralCmd `cmd:"" help:"Offline collateral bundle commands."`
	Demo       DemoCmd       `cmd:"" help:"Run on embedded test evidence (NOT confidential)."`
}

func main() {
	var cli CLI
	ctx := kong.Parse(&cli, kong.Name("duo-confidential"))
	if err := ctx.Run(&cli.Globals); err != nil {
		os.Exit(1)
	}
}
