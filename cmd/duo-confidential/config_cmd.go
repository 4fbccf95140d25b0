package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/internal/wording"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// ConfigCmd groups the configuration commands.
type ConfigCmd struct {
	Check   ConfigCheckCmd   `cmd:"" help:"Load and validate the configuration (file plus DUO_CONFIDENTIAL_* overrides) and summarise it."`
	Example ConfigExampleCmd `cmd:"" help:"Print the commented example configuration (every key with its default)."`
}

// ConfigCheckCmd validates a configuration file.
type ConfigCheckCmd struct {
	File string `arg:"" optional:"" help:"File to check instead of --config (for a candidate file before installing it)." placeholder:"FILE"`
}

// Run loads and validates the configuration. On success it prints
// "config OK: <path>" and a summary to stdout; otherwise it returns every
// problem, each with file:line or the environment variable and the key.
func (c *ConfigCheckCmd) Run(g *Globals) error {
	path, named := g.ConfigPath(), g.Config != ""
	if c.File != "" {
		path, named = c.File, true
	}
	cfg, found, err := g.loadConfigFile(path, named)
	if err != nil {
		return err
	}
	g.Logger().Debug("configuration loaded", "path", path, "found", found)
	return writeConfigSummary(g.stdout(), path, found, cfg)
}

// writeConfigSummary prints what an admin most needs to confirm: where
// state lives, what is trusted, and where each non-default value came from.
func writeConfigSummary(w io.Writer, path string, found bool, cfg *config.Config) error {
	var b strings.Builder
	if found {
		fmt.Fprintf(&b, "config OK: %s\n", path)
	} else {
		fmt.Fprintf(&b, "config OK: %s (file not found: built-in defaults)\n", path)
	}
	row := func(key, value string) { fmt.Fprintf(&b, "  %-12s %s\n", key, value) }
	row("state_dir", cfg.StateDir)
	row("log", cfg.Log.Level+", "+cfg.Log.Format)

	ca := "system roots"
	if cfg.Outbound.CABundle != "" {
		ca = "system roots + " + cfg.Outbound.CABundle
	}
	row("outbound", fmt.Sprintf("timeout %s, TLS roots: %s", wording.Duration(cfg.Outbound.Timeout), ca))

	key := "not set"
	if cfg.Privatemode.APIKeyFile != "" {
		key = cfg.Privatemode.APIKeyFile
	}
	row("privatemode", fmt.Sprintf("%s (API key file: %s)", cfg.Privatemode.Endpoint, key))

	m := cfg.Attestation.Manifest
	var trust string
	switch m.Mode {
	case config.ManifestModePinned:
		trust = "pinned: only " + m.File
	case config.ManifestModeAllowlist:
		trust = fmt.Sprintf("allowlist: %d approved manifest(s), published at %s", len(m.AllowedSHA256), m.URL)
	default:
		trust = "dynamic: as published at " + m.URL
		if len(m.AllowedSHA256) > 0 {
			trust += fmt.Sprintf(", restricted to %d approved manifest(s)", len(m.AllowedSHA256))
		}
	}
	trust += fmt.Sprintf("; history up to %d", m.MaxHistory)
	if n := len(m.ApprovedRollbacks); n > 0 {
		trust += fmt.Sprintf("; %d approved rollback(s)", n)
	}
	row("manifest", trust)

	col := cfg.Attestation.Collateral
	online := "offline (bundle only)"
	if col.Online {
		online = "online fetch from Intel PCS / AMD KDS allowed"
	}
	row("collateral", fmt.Sprintf("%s, %s, max age %s", col.Bundle, online, wording.Duration(col.MaxAge)))
	row("reattest", "every "+wording.Duration(cfg.Attestation.ReattestInterval))
	row("tls", tlsSummary(cfg))

	if envs := cfg.EnvOverridden(); len(envs) > 0 {
		row("overrides", strings.Join(envs, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tlsSummary says where the listeners' certificates come from.
func tlsSummary(cfg *config.Config) string {
	t := cfg.TLS
	names := strings.Join(cfg.TLSNames(), ", ")
	switch t.Source {
	case apptls.SourceOff:
		return "OFF: every listener serves plain HTTP"
	case apptls.SourceACME:
		return fmt.Sprintf("acme from %s for %s", t.ACME.Directory, names)
	case apptls.SourceFiles:
		if names == "" {
			names = "the names in the certificate"
		}
		return fmt.Sprintf("files %s for %s", t.Files.Cert, names)
	default:
		return fmt.Sprintf("local CA in %s/%s for %s", cfg.StateDir, statedir.LocalCADir, names)
	}
}

// ConfigExampleCmd prints the example configuration.
type ConfigExampleCmd struct{}

// Run writes the embedded example configuration to stdout, byte for byte,
// so `duo-confidential config example > config.yaml` gives a valid file.
func (c *ConfigExampleCmd) Run(g *Globals) error {
	if _, err := g.stdout().Write(config.ExampleConfig); err != nil {
		return fmt.Errorf("write example configuration: %w", err)
	}
	return nil
}
