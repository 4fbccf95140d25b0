package appliance

import (
	"context"
	"fmt"
	"net"

	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// newCerts builds the certificate manager of the listeners from the tls
// section; it opens (or creates) the local CA but does no network I/O.
func (a *Appliance) newCerts() (*apptls.Manager, error) {
	cfg := a.o.Config
	roots, err := cfg.Outbound.RootCAs()
	if err != nil {
		return nil, err
	}
	o, err := cfg.TLSOptions(roots)
	if err != nil {
		return nil, err
	}
	o.Logger = a.log.With("part", "tls")
	m, err := apptls.New(o)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return m, nil
}

// secureListeners wraps every listener in TLS from the certificate
// manager (or leaves them plain with tls.source off).
func (a *Appliance) secureListeners(ls Listeners) Listeners {
	ls.Proxy = a.certs.Listener(ls.Proxy)
	if ls.Gateway != nil {
		ls.Gateway = a.certs.Listener(ls.Gateway)
	}
	if ls.Admin != nil {
		ls.Admin = a.certs.Listener(ls.Admin)
	}
	return ls
}

// URL is the base URL clients use for a listener of the appliance: https
// unless TLS is off, with the certificate's first name for a wildcard
// or loopback address so that it verifies.
func (a *Appliance) URL(ln net.Listener) string {
	addr := ln.Addr().String()
	if a.certs.Source() == apptls.SourceOff {
		return "http://" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "https://" + addr
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
		if names := a.o.Config.TLSNames(); len(names) > 0 && net.ParseIP(names[0]) == nil && names[0][0] != '*' {
			host = names[0]
		}
		if ip.IsLoopback() && a.certs.Source() == apptls.SourceLocalCA {
			host = "localhost"
		}
	}
	return "https://" + net.JoinHostPort(host, port)
}

// TLSStatus returns the certificate state of the listeners.
func (a *Appliance) TLSStatus() apptls.Status { return a.certs.Status() }

// CACertificatePEM returns the local CA's certificate that clients must
// trust, or nil when the local CA is not the certificate source.
func (a *Appliance) CACertificatePEM() []byte {
	if ca := a.certs.LocalCA(); ca != nil {
		return ca.CertificatePEM()
	}
	return nil
}

// CACertificateFile is the path of the local CA's certificate file, or ""
// when the local CA is not the certificate source.
func (a *Appliance) CACertificateFile() string {
	if ca := a.certs.LocalCA(); ca != nil {
		return ca.CertificateFile()
	}
	return ""
}

// Reload applies what can change without a restart: operator certificate
// files are re-read (a bad new pair keeps the old one serving and returns
// the error), managed certificates are checked for renewal, and the
// operator's gateway key files are re-read (also every gatewayKeyPoll). It
// is what SIGHUP does.
func (a *Appliance) Reload(ctx context.Context) error {
	if err := a.certs.Reload(ctx); err != nil {
		return fmt.Errorf("reload tls: %w", err)
	}
	if err := a.reloadGatewayKeys(); err != nil {
		return fmt.Errorf("reload gateway keys: %w", err)
	}
	return nil
}
