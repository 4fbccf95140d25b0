package config

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// Defaults of the tls section.
const (
	DefaultTLSSource       = apptls.SourceLocalCA
	DefaultACMEDirectory   = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultTLSPollInterval = apptls.DefaultPollInterval
)

// TLSConfig chooses where the certificate of every listener comes from:
// Source is local-ca (the default: the appliance's own CA), acme, files
// (the operator's), or off (plain HTTP, only when set explicitly). Names
// are the DNS names and IP addresses it covers, first the name clients
// connecting by IP are given.
type TLSConfig struct {
	Source  string        `yaml:"source"`
	Names   []string      `yaml:"names"`
	ACME    ACMEConfig    `yaml:"acme"`
	LocalCA LocalCAConfig `yaml:"local_ca"`
	Files   TLSFiles      `yaml:"files"`
}

// ACMEConfig is the ACME account and CA: the directory URL, the account
// email and agreement to the CA's terms (required, never prompted), the
// roots of a private CA, external account binding, the challenge types and
// the ports the CA's validation connections are forwarded to.
type ACMEConfig struct {
	Directory      string   `yaml:"directory"`
	Email          string   `yaml:"email"`
	AgreeTerms     bool     `yaml:"agree_terms"`
	CABundle       string   `yaml:"ca_bundle"`
	EABKeyID       string   `yaml:"eab_key_id"`
	EABMACKeyFile  string   `yaml:"eab_mac_key_file"`
	Challenges     []string `yaml:"challenges"`
	AltHTTPPort    int      `yaml:"alt_http_port"`
	AltTLSALPNPort int      `yaml:"alt_tls_alpn_port"`
	// RenewalInfo uses ACME Renewal Information (RFC 9773); false for
	// CAs that mishandle it.
	RenewalInfo bool `yaml:"renewal_info"`
}

// LocalCAConfig tunes the local CA: how long its leaf certificates live
// (renewed when a third is left).
type LocalCAConfig struct {
	LeafLifetime time.Duration `yaml:"leaf_lifetime"`
}

// TLSFiles names the operator's certificate (leaf first, then
// intermediates) and key files, re-read on SIGHUP and every PollInterval.
type TLSFiles struct {
	Cert         string        `yaml:"cert"`
	Key          string        `yaml:"key"`
	PollInterval time.Duration `yaml:"poll_interval"`
}

var (
	tlsSources     = []string{apptls.SourceLocalCA, apptls.SourceACME, apptls.SourceFiles, apptls.SourceOff}
	acmeChallenges = []string{apptls.ChallengeTLSALPN01, apptls.ChallengeHTTP01}
)

func (v *validator) tls() {
	t := v.c.TLS
	v.oneOf("tls.source", t.Source, tlsSources)
	for i, n := range t.Names {
		if err := apptls.CheckName(n); err != nil {
			v.fail(fmt.Sprintf("tls.names[%d]", i), "%v", err)
		}
	}
	lt := t.LocalCA.LeafLifetime
	v.durationIn("tls.local_ca.leaf_lifetime", lt, time.Hour, 90*24*time.Hour)
	if pi := t.Files.PollInterval; pi != 0 {
		v.durationIn("tls.files.poll_interval", pi, time.Second, time.Hour)
	}
	switch t.Source {
	case apptls.SourceACME:
		v.acme()
	case apptls.SourceFiles:
		v.tlsFiles()
	}
}

func (v *validator) acme() {
	a := v.c.TLS.ACME
	if len(v.c.TLS.Names) == 0 {
		v.fail("tls.names", "ACME needs the DNS name(s) GitLab uses to reach the appliance, e.g. [duo.example.com]")
	}
	v.httpsURL("tls.acme.directory", a.Directory)
	if !strings.Contains(a.Email, "@") {
		v.fail("tls.acme.email", "%q: ACME needs the email address of the account (the CA sends expiry notices there)", a.Email)
	}
	if !a.AgreeTerms {
		v.fail("tls.acme.agree_terms", "must be true: read the CA's terms of service (linked from its directory) and agree to them here; the appliance never asks interactively")
	}
	if a.CABundle != "" && v.absPath("tls.acme.ca_bundle", a.CABundle) {
		if _, err := readCABundle(a.CABundle); err != nil {
			v.fail("tls.acme.ca_bundle", "%v", err)
		}
	}
	switch {
	case (a.EABKeyID == "") != (a.EABMACKeyFile == ""):
		v.fail("tls.acme.eab_key_id", "external account binding needs both eab_key_id and eab_mac_key_file (as your CA issued them)")
	case a.EABMACKeyFile != "" && v.absPath("tls.acme.eab_mac_key_file", a.EABMACKeyFile):
		v.secretFile("tls.acme.eab_mac_key_file", a.EABMACKeyFile, "the EAB MAC key")
	}
	for i, c := range a.Challenges {
		if !slices.Contains(acmeChallenges, c) {
			v.fail(fmt.Sprintf("tls.acme.challenges[%d]", i), "must be one of %s; got %q", strings.Join(acmeChallenges, ", "), c)
		}
	}
	for path, p := range map[string]int{"tls.acme.alt_http_port": a.AltHTTPPort, "tls.acme.alt_tls_alpn_port": a.AltTLSALPNPort} {
		if p < 0 || p > 65535 {
			v.fail(path, "%d is not a port (0 means the standard port)", p)
		}
	}
}

// tlsFiles loads the operator's files the way the service will, so
// `config check` reports a bad pair before a restart does.
func (v *validator) tlsFiles() {
	f := v.c.TLS.Files
	if f.Cert == "" || f.Key == "" {
		v.fail("tls.files.cert", "the files source needs both tls.files.cert and tls.files.key")
		return
	}
	if !v.absPath("tls.files.cert", f.Cert) || !v.absPath("tls.files.key", f.Key) {
		return
	}
	if err := apptls.CheckFiles(f.Cert, f.Key, v.c.TLS.Names, time.Now()); err != nil {
		v.fail("tls.files.cert", "%v", err)
	}
}

// TLSNames returns the names the certificate covers: the configured ones,
// or for the local CA by default this machine's host name, localhost and
// the loopback addresses, plus the listen addresses that name one IP.
func (c *Config) TLSNames() []string {
	if len(c.TLS.Names) > 0 || c.TLS.Source != apptls.SourceLocalCA {
		return slices.Clone(c.TLS.Names)
	}
	var names []string
	if h, err := os.Hostname(); err == nil && apptls.CheckName(h) == nil && h != "localhost" {
		names = append(names, strings.ToLower(h))
	}
	names = append(names, "localhost", "127.0.0.1", "::1")
	for _, addr := range []string{c.Proxy.Listen, c.Gateway.Listen} {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() && !slices.Contains(names, ip.String()) {
			names = append(names, ip.String())
		}
	}
	return names
}

// TLSOptions turns the tls section into the certificate manager's options;
// roots are the outbound roots, to which tls.acme.ca_bundle is added for
// the ACME server's own certificate.
func (c *Config) TLSOptions(roots *x509.CertPool) (apptls.Options, error) {
	t := c.TLS
	o := apptls.Options{
		Source:   t.Source,
		Names:    c.TLSNames(),
		StateDir: c.StateDir,
		LocalCA:  apptls.LocalCAOptions{LeafLifetime: t.LocalCA.LeafLifetime},
		Files:    apptls.FilesOptions{Cert: t.Files.Cert, Key: t.Files.Key, PollInterval: t.Files.PollInterval},
	}
	if t.Source != apptls.SourceACME {
		return o, nil
	}
	a := t.ACME
	o.ACME = apptls.ACMEOptions{
		Directory:      a.Directory,
		Email:          a.Email,
		AgreeTerms:     a.AgreeTerms,
		Roots:          roots,
		Proxy:          c.Outbound.ProxyFunc(),
		Challenges:     a.Challenges,
		AltHTTPPort:    a.AltHTTPPort,
		AltTLSALPNPort: a.AltTLSALPNPort,

		DisableRenewalInfo: !a.RenewalInfo,
	}
	if a.CABundle != "" {
		extra, err := readCABundle(a.CABundle)
		if err != nil {
			return o, fmt.Errorf("tls.acme.ca_bundle: %w", err)
		}
		pool := roots.Clone()
		for _, cert := range extra {
			pool.AddCert(cert)
		}
		o.ACME.Roots = pool
	}
	if a.EABKeyID != "" {
		b, err := os.ReadFile(a.EABMACKeyFile)
		if err != nil {
			return o, fmt.Errorf("read tls.acme.eab_mac_key_file: %w", err)
		}
		o.ACME.EAB = &apptls.EAB{KeyID: a.EABKeyID, MACKey: strings.TrimSpace(string(b))}
	}
	return o, nil
}
