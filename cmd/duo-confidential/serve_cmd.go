package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// ServeCmd runs the appliance until SIGINT/SIGTERM, then drains.
type ServeCmd struct {
	Listen        string        `help:"Override proxy.listen (HOST:PORT)."`
	GatewayListen string        `name:"gateway-listen" help:"Override gateway.listen (HOST:PORT)."`
	Drain         time.Duration `help:"How long in-flight requests and streams may finish after SIGTERM." default:"30s"`
	ShutdownDelay time.Duration `name:"shutdown-delay" help:"After SIGTERM, report not ready (/readyz 503) but keep serving for this long before the drain, so a load balancer's health checks take this replica out first (Kubernetes: use the chart's preStop sleep instead)." default:"0s"`
	// Sandbox mode is a command-line choice, never configuration, so a
	// production config cannot trust test roots by accident.
	Sandbox     string `help:"SANDBOX MODE (NOT CONFIDENTIAL): trust the test roots, manifest and collateral that 'duo-confidential sandbox --out DIR' wrote to DIR, and use its endpoint." type:"existingdir" placeholder:"DIR"`
	FixedSecret string `name:"fixed-secret" help:"Sandbox mode only: use this secret (JSON {\"id\":…,\"key\":\"<64 hex>\"}) instead of attestation and exchange, for interoperability tests." type:"existingfile" placeholder:"FILE"`
}

// Run serves.
func (c *ServeCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return err
	}
	if c.Listen != "" {
		cfg.Proxy.Listen = c.Listen
	}
	if c.GatewayListen != "" {
		cfg.Gateway.Listen = c.GatewayListen
	}
	opts := appliance.Options{Config: cfg, Logger: g.Logger(), Version: version, ShutdownDelay: c.ShutdownDelay}
	if c.FixedSecret != "" && c.Sandbox == "" {
		return errors.New("--fixed-secret skips attestation and is refused outside sandbox mode (--sandbox DIR)")
	}
	if c.Sandbox != "" && !testRootsBuilt {
		return errNoTestRoots("--sandbox")
	}
	if c.Sandbox != "" {
		sb, key, err := loadSandboxDir(c.Sandbox)
		if err != nil {
			return err
		}
		if c.FixedSecret != "" {
			if sb.FixedSecret, err = loadFixedSecret(c.FixedSecret); err != nil {
				return err
			}
		}
		opts.Sandbox, opts.APIKey = sb, key
	}
	a, err := appliance.New(opts)
	if err != nil {
		return err
	}
	ls := appliance.Listeners{}
	if ls.Proxy, err = net.Listen("tcp", cfg.Proxy.Listen); err != nil {
		return fmt.Errorf("listen on %s (proxy.listen): %w", cfg.Proxy.Listen, err)
	}
	if cfg.Gateway.Enabled() {
		if ls.Gateway, err = net.Listen("tcp", cfg.Gateway.Listen); err != nil {
			ls.Proxy.Close()
			return fmt.Errorf("listen on %s (gateway.listen): %w", cfg.Gateway.Listen, err)
		}
	}
	if cfg.AgentPlatformEnabled() {
		if ls.AgentPlatform, err = net.Listen("tcp", cfg.AgentPlatform.Listen); err != nil {
			closeListeners(ls)
			return fmt.Errorf("listen on %s (agent_platform.listen): %w", cfg.AgentPlatform.Listen, err)
		}
	}
	stopReload := reloadOnHangup(g.Context(), a, g.Logger())
	defer stopReload()
	stopSystemd, systemdDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(systemdDone)
		superviseSystemd(g.Context(), stopSystemd, a, ls.Proxy.Addr().String(), cfg.TLS.Source != apptls.SourceOff, g.Logger())
	}()
	defer func() { close(stopSystemd); <-systemdDone }()
	if ls.Admin, err = listenAdmin(cfg); err != nil {
		closeListeners(ls)
		return err
	}
	return a.RunListeners(g.Context(), ls, c.Drain)
}

// reloadOnHangup applies SIGHUP (systemctl reload) until ctx ends or the
// returned stop is called: certificate files are re-read, and a reload
// that fails keeps what is running.
func reloadOnHangup(ctx context.Context, a *appliance.Appliance, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				sdNotify(log, daemon.SdNotifyReloading)
				err := a.Reload(ctx)
				sdNotify(log, daemon.SdNotifyReady)
				if err != nil {
					log.Error("reload (SIGHUP) failed; still serving with what was loaded before", "err", err)
					continue
				}
				log.Info("reloaded (SIGHUP)")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// Files a sandbox writes for a separately started appliance.
const (
	sandboxEndpointFile   = "endpoint"
	sandboxRootsFile      = "test-roots.pem"
	sandboxManifestFile   = "manifest.json"
	sandboxCollateralFile = "collateral.json"
	sandboxAPIKey         = "sandbox-api-key"
)

// errNoTestRoots is the answer of a packaged build to a flag that would
// trust test vendor roots.
func errNoTestRoots(flag string) error {
	return fmt.Errorf("%s trusts TEST vendor roots and is not part of this build: packaged duo-confidential builds never trust them (use a build from a source checkout for tests and demos)", flag)
}

// loadSandboxDir reads what `sandbox --out DIR` wrote.
func loadSandboxDir(dir string) (*appliance.Sandbox, string, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("sandbox directory: %w", err)
		}
		return b, nil
	}
	ep, err := read(sandboxEndpointFile)
	if err != nil {
		return nil, "", err
	}
	rootsPEM, err := read(sandboxRootsFile)
	if err != nil {
		return nil, "", err
	}
	roots, err := attest.ParseTestRoots(rootsPEM)
	if err != nil {
		return nil, "", err
	}
	manifest, err := read(sandboxManifestFile)
	if err != nil {
		return nil, "", err
	}
	bundle, err := collateral.Load(filepath.Join(dir, sandboxCollateralFile))
	if err != nil {
		return nil, "", err
	}
	return &appliance.Sandbox{Endpoint: strings.TrimSpace(string(ep)), Roots: roots, Collateral: bundle, Manifest: manifest}, sandboxAPIKey, nil
}

// fixedSecretFile is the interop secret's JSON form.
type fixedSecretFile struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

func loadFixedSecret(path string) (*envelope.Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read fixed secret: %w", err)
	}
	var f fixedSecretFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("fixed secret %s: %w", path, err)
	}
	k, err := hex.DecodeString(f.Key)
	if err != nil || len(k) != 32 || f.ID == "" || strings.Contains(f.ID, ":") {
		return nil, fmt.Errorf("fixed secret %s: want {\"id\":\"<id without ':'>\",\"key\":\"<64 hex characters>\"}", path)
	}
	return &envelope.Secret{ID: f.ID, Key: [32]byte(k)}, nil
}

// listenAdmin opens admin.listen, or returns nil when it is empty.
func listenAdmin(cfg *config.Config) (net.Listener, error) {
	if !cfg.Admin.Enabled() {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (admin.listen): %w", cfg.Admin.Listen, err)
	}
	return ln, nil
}

// closeListeners closes the listeners opened so far.
func closeListeners(ls appliance.Listeners) {
	for _, ln := range []net.Listener{ls.Proxy, ls.Gateway, ls.AgentPlatform, ls.Admin} {
		if ln != nil {
			ln.Close()
		}
	}
}
