package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// EnvProxyToken holds the proxy's inbound token for client-side commands
// (doctor). It is not a configuration key, so Parse ignores it instead of
// refusing it as an unknown override.
const EnvProxyToken = EnvPrefix + "PROXY_TOKEN"

// LocalCAPaths returns where the local CA's key and certificate live.
func (c *Config) LocalCAPaths() (key, cert string) {
	dir := filepath.Join(c.StateDir, statedir.LocalCADir)
	return filepath.Join(dir, statedir.LocalCAKeyFile), filepath.Join(dir, statedir.LocalCACertFile)
}

// ProbeAddr turns a listen address into one this machine can dial: an
// unspecified host (0.0.0.0, ::, empty) becomes loopback.
func ProbeAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// ListenerClientTLS is how a client on this machine verifies the
// appliance's own listeners as GitLab would: the outbound roots plus the
// local CA's certificate when that is the source (read from its file, never
// created), with ServerName the first TLS name. It returns nil with
// tls.source off.
func (c *Config) ListenerClientTLS() (*tls.Config, error) {
	if c.TLS.Source == apptls.SourceOff {
		return nil, nil
	}
	roots, err := c.Outbound.RootCAs()
	if err != nil {
		return nil, err
	}
	if c.TLS.Source == apptls.SourceLocalCA {
		_, certPath := c.LocalCAPaths()
		b, err := os.ReadFile(certPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Not created yet: the handshake will say what is wrong.
		case err != nil:
			return nil, fmt.Errorf("read the local CA certificate: %w", err)
		default:
			if !roots.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("%s holds no PEM certificate", certPath)
			}
		}
	}
	if c.TLS.Source == apptls.SourceACME && c.TLS.ACME.CABundle != "" {
		extra, err := readCABundle(c.TLS.ACME.CABundle)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_bundle: %w", err)
		}
		for _, cert := range extra {
			roots.AddCert(cert)
		}
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if names := c.TLSNames(); len(names) > 0 && !strings.HasPrefix(names[0], "*") {
		tc.ServerName = names[0]
	}
	return tc, nil
}

// ReadOnlyCollateralSource is the collateral a one-off verification uses
// without touching the state directory: the installed bundle (if any),
// followed by Intel PCS / AMD KDS when attestation.collateral.online
// allows. Unlike CollateralSource it never writes fetched items back, so a
// check run by root leaves no root-owned files behind.
func (c *Config) ReadOnlyCollateralSource() (attest.CollateralSource, error) {
	var chain collateral.Chain
	b, err := collateral.Load(c.BundlePath())
	switch {
	case err == nil:
		chain = append(chain, b)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if c.Attestation.Collateral.Online {
		roots, err := c.Outbound.RootCAs()
		if err != nil {
			return nil, err
		}
		online, err := collateral.NewOnline(collateral.OnlineOptions{
			RootCAs: roots, Proxy: c.Outbound.ProxyFunc(), Timeout: c.Outbound.Timeout,
		})
		if err != nil {
			return nil, err
		}
		chain = append(chain, online)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("no collateral bundle at %s and attestation.collateral.online is false; %s", c.BundlePath(), attest.RefreshHint)
	}
	return chain, nil
}

// LeafExpiryWarning is how close to expiry a listener certificate may come
// before a check warns: the local CA renews its leaves with a third of
// their lifetime left, so a leaf with a sixth left means renewal is
// failing; ACME and operator files get 14 days, as the log does.
func (c *Config) LeafExpiryWarning() time.Duration {
	if c.TLS.Source == apptls.SourceLocalCA {
		lt := c.TLS.LocalCA.LeafLifetime
		if lt == 0 {
			lt = apptls.DefaultLeafLifetime
		}
		return lt / 6
	}
	return 14 * 24 * time.Hour
}
