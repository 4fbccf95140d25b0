package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
)

// TrustLogPath is where the appliance keeps its trust log.
func (c *Config) TrustLogPath() string { return filepath.Join(c.StateDir, statedir.TrustLogFile) }

// KeysPath is the directory of the gateway's self-signed JWT keys.
func (c *Config) KeysPath() string { return filepath.Join(c.StateDir, statedir.KeysDir) }

// BundlePath is the installed collateral bundle: the configured one, else
// the default name inside the state directory.
func (c *Config) BundlePath() string {
	if p := c.Attestation.Collateral.Bundle; p != "" {
		return p
	}
	return filepath.Join(c.StateDir, statedir.CollateralFile)
}

// OutboundClient is the HTTP client for every call to the outside world:
// system roots plus the configured CA bundle, HTTPS_PROXY/NO_PROXY
// (ProxyFunc), TLS 1.2 or newer, and the configured timeout on each call.
func (c *Config) OutboundClient() (*http.Client, error) {
	client, err := c.OutboundStreamClient()
	if err != nil {
		return nil, err
	}
	client.Timeout = c.Outbound.Timeout
	return client, nil
}

// OutboundStreamClient is OutboundClient without the overall timeout, for
// streams that their callers bound by progress instead.
func (c *Config) OutboundStreamClient() (*http.Client, error) {
	pool, err := c.Outbound.RootCAs()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = c.Outbound.ProxyFunc()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// Network says whether ManifestPolicy and CollateralSource may reach the
// outside world for what the configuration does not hold locally.
type Network int

const (
	// Online may fetch dynamic manifests and vendor collateral.
	Online Network = iota
	// Offline uses local files only (a pinned manifest, the bundle).
	Offline
)

// OfflineIf returns Offline when offline is true, else Online: for command
// flags and configuration switches.
func OfflineIf(offline bool) Network {
	if offline {
		return Offline
	}
	return Online
}

// ManifestPolicy turns configuration (or a manifest file named on the
// command line, which pins it) into the verifier's manifest policy.
func (c *Config) ManifestPolicy(manifestFile string, network Network) (attest.ManifestPolicy, error) {
	mc := c.Attestation.Manifest
	p := attest.ManifestPolicy{
		Mode:              mc.Mode,
		AllowedSHA256:     mc.AllowedSHA256,
		MaxHistory:        mc.MaxHistory,
		ApprovedRollbacks: mc.ApprovedRollbacks,
	}
	if manifestFile != "" {
		p.Mode, mc.File = attest.ModePinned, manifestFile
	}
	switch p.Mode {
	case attest.ModePinned:
		b, err := os.ReadFile(mc.File)
		if err != nil {
			return p, fmt.Errorf("read pinned manifest: %w", err)
		}
		p.Pinned = b
	case attest.ModeAllowlist:
	case attest.ModeDynamic:
		if network == Offline {
			return p, errors.New("manifest mode is dynamic, which fetches the published manifest; offline, pass --manifest FILE or configure pinned/allowlist mode")
		}
		client, err := c.OutboundClient()
		if err != nil {
			return p, err
		}
		p.Fetcher = &attest.HTTPManifest{URL: mc.URL, Client: client}
	default:
		return p, fmt.Errorf("unknown manifest mode %q", p.Mode)
	}
	return p, nil
}

// CollateralSource builds where verification gets vendor collateral:
// offline, the bundle only (bundle overrides the installed one); online,
// the installed bundle as a cache in front of Intel PCS / AMD KDS that
// refetches only what verification would refuse anyway, or an explicit
// bundle followed by the vendors, never written to.
func (c *Config) CollateralSource(bundle string, network Network) (attest.CollateralSource, error) {
	path := bundle
	if path == "" {
		path = c.BundlePath()
	}
	if network == Offline {
		b, err := collateral.Load(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no collateral bundle at %s (offline); %s", path, attest.RefreshHint)
		}
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	roots, err := c.Outbound.RootCAs()
	if err != nil {
		return nil, err
	}
	online, err := collateral.NewOnline(collateral.OnlineOptions{
		RootCAs: roots,
		Proxy:   c.Outbound.ProxyFunc(),
		Timeout: c.Outbound.Timeout,
	})
	if err != nil {
		return nil, err
	}
	if bundle == "" {
		return collateral.OpenCache(collateral.CacheOptions{Path: path, Upstream: online, RefreshAfter: c.Attestation.Collateral.MaxAge})
	}
	b, err := collateral.Load(path)
	if err != nil {
		return nil, err
	}
	return collateral.Chain{b, online}, nil
}
