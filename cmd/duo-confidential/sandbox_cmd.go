//go:build !duo_production

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// SandboxCmd runs the sandbox backend on its own.
type SandboxCmd struct {
	Listen          string  `help:"Address to listen on (loopback only is sensible)." default:"127.0.0.1:8081"`
	Platform        string  `help:"Evidence the sandbox presents: tdx or sev-snp." enum:"tdx,sev-snp" default:"tdx"`
	TokensPerSecond float64 `name:"tokens-per-second" help:"Pace streamed tokens (0: as fast as possible)."`
	Plaintext       bool    `help:"Benchmark baseline: answer plaintext OpenAI JSON/SSE without envelopes."`
	FixedSecret     string  `name:"fixed-secret" help:"Also accept this secret (JSON {\"id\",\"key\"}) without an exchange, for interoperability tests." type:"existingfile" placeholder:"FILE"`
	Out             string  `help:"Write the endpoint, test roots, manifest and collateral here, for 'serve --sandbox DIR'." placeholder:"DIR"`
}

// Run serves the sandbox until interrupted.
func (c *SandboxCmd) Run(g *Globals) error {
	log := g.Logger()
	o := sandbox.Options{Platform: c.Platform, TokensPerSecond: c.TokensPerSecond, Plaintext: c.Plaintext, Logger: log}
	if c.FixedSecret != "" {
		s, err := loadFixedSecret(c.FixedSecret)
		if err != nil {
			return err
		}
		o.FixedSecret = s
	}
	sb, err := sandbox.New(o)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	if c.Out != "" {
		if err := writeSandboxDir(c.Out, "http://"+ln.Addr().String(), sb); err != nil {
			return err
		}
		log.Info("sandbox trust files written", "dir", c.Out)
	}
	errc := make(chan error, 1)
	go func() { errc <- sb.Serve(ln) }()
	fmt.Fprintf(g.stdout(), "%s\nlistening on http://%s\n", sandbox.Banner, ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-g.Context().Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sb.Shutdown(ctx)
}

// writeSandboxDir writes what an appliance in sandbox mode must trust.
func writeSandboxDir(dir, endpoint string, sb *sandbox.Server) error {
	be := sb.Backend()
	bundle, err := appliance.SandboxBundle(sb, time.Now())
	if err != nil {
		return err
	}
	if err := statedir.EnsureDir(dir); err != nil {
		return err
	}
	for name, b := range map[string][]byte{
		sandboxEndpointFile: []byte(endpoint + "\n"),
		sandboxRootsFile:    be.RootsPEM(),
		sandboxManifestFile: sb.Manifest(),
	} {
		if err := statedir.WriteFile(filepath.Join(dir, name), b, statedir.PublicMode); err != nil {
			return err
		}
	}
	return bundle.WriteFile(filepath.Join(dir, sandboxCollateralFile))
}
