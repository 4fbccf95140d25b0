package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"

	"golang.org/x/net/http/httpproxy"
)

// maxCABundleSize bounds the CA bundle; a full public root store is under
// 1 MiB, so anything far larger is the wrong file.
const maxCABundleSize = 8 << 20

// RootCAs returns the roots for outbound TLS: the system roots plus every
// certificate in CABundle (if set). It re-reads the bundle on each call, so
// a replaced bundle takes effect on the next client built from it.
func (o OutboundConfig) RootCAs() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		// No system store (a minimal container): the bundle alone must do.
		pool = x509.NewCertPool()
	}
	if o.CABundle == "" {
		return pool, nil
	}
	certs, err := readCABundle(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("outbound.ca_bundle: %w", err)
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ProxyFunc chooses the HTTP proxy of every outbound request from
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (and their lower-case forms) as they
// are when it is called. Unlike http.ProxyFromEnvironment, which reads them
// once per process, each client built picks up the environment it is
// built in. Requests to loopback addresses are never proxied.
func (o OutboundConfig) ProxyFunc() func(*http.Request) (*url.URL, error) {
	choose := httpproxy.FromEnvironment().ProxyFunc()
	return func(r *http.Request) (*url.URL, error) { return choose(r.URL) }
}

// readCABundle reads a PEM file that must hold one or more certificates and
// nothing else. Unlike x509.CertPool.AppendCertsFromPEM it does not skip
// what it cannot parse: a bundle that silently loses a root shows up only
// as a TLS failure much later.
func readCABundle(path string) ([]*x509.Certificate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist; point it at your organisation's root CA certificates (PEM), or remove the key", path)
		}
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxCABundleSize {
		return nil, fmt.Errorf("%s is not a PEM certificate file (not a regular file, or larger than %d bytes)", path, maxCABundleSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is a %q, not a CERTIFICATE; a CA bundle holds certificates only (remove that block, and if it is a private key, treat it as exposed)", path, n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d cannot be parsed: %w", path, n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificates (blocks starting \"-----BEGIN CERTIFICATE-----\")", path)
	}
	return certs, nil
}
