package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// trustLogFile is the trust log's name inside the state directory.
const trustLogFile = "trust-log.jsonl"

// trustLogPath is where the appliance keeps its trust log.
func trustLogPath(cfg *appliance.Config) string {
	return filepath.Join(cfg.StateDir, trustLogFile)
}

// manifestPolicy turns configuration (or a manifest file named on the
// command line, which pins it) into the verifier's manifest policy.
func manifestPolicy(cfg *appliance.Config, manifestFile string, offline bool) (attest.ManifestPolicy, error) {
	mc := cfg.Attestation.Manifest
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
		if offline {
			return p, errors.New("manifest mode is dynamic, which fetches the published manifest; offline, pass --manifest FILE or configure pinned/allowlist mode")
		}
		client, err := outboundClient(cfg)
		if err != nil {
			return p, err
		}
		p.Fetcher = &attest.HTTPManifest{URL: mc.URL, Client: client}
	default:
		return p, fmt.Errorf("unknown manifest mode %q", p.Mode)
	}
	return p, nil
}

// outboundClient is an HTTP client for calls to the outside world: system
// roots plus the configured CA bundle, HTTPS_PROXY/NO_PROXY, a timeout.
func outboundClient(cfg *appliance.Config) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if cfg.Outbound.CABundle != "" {
		b, err := os.ReadFile(cfg.Outbound.CABundle)
		if err != nil {
			return nil, fmt.Errorf("read outbound.ca_bundle: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("outbound.ca_bundle %s holds no PEM certificate", cfg.Outbound.CABundle)
		}
	}
	timeout := cfg.Outbound.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}
