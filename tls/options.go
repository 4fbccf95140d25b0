package tls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Certificate sources, the values of Options.Source.
const (
	SourceACME    = "acme"     // certmagic's ACME issuer (public or private CA)
	SourceLocalCA = "local-ca" // our CA, persisted in the state directory
	SourceFiles   = "files"    // the operator's certificate and key files
	SourceOff     = "off"      // plain HTTP: only when explicitly configured
)

// ACME challenge types, the values of ACMEOptions.Challenges.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Defaults of the tuning knobs.
const (
	DefaultExpiryWarning = 14 * 24 * time.Hour
	DefaultPollInterval  = 10 * time.Second
	// DefaultRenewCheckInterval is how often managed certificates are
	// checked for renewal; certmagic's own default (10 min) is fine for
	// 90-day ACME certificates and for 7-day local leaves alike.
	DefaultRenewCheckInterval = 10 * time.Minute
)

// Options configures a Manager. Names are the DNS names and IP addresses
// the certificate must cover; the first is the default server name for
// clients that send no SNI (those connecting by IP).
type Options struct {
	Source   string
	Names    []string
	StateDir string // certmagic storage and the local CA live under it
	ACME     ACMEOptions
	LocalCA  LocalCAOptions
	Files    FilesOptions
	Logger   *slog.Logger
	// Now is the clock for expiry warnings and local-CA leaves; nil is
	// time.Now.
	Now func() time.Time
	// ExpiryWarning is how long before expiry a certificate gets a
	// warning; 0 is DefaultExpiryWarning.
	ExpiryWarning time.Duration
	// RenewCheckInterval is certmagic's maintenance period; 0 is
	// DefaultRenewCheckInterval.
	RenewCheckInterval time.Duration
}

// ACMEOptions configures certmagic's ACME issuer. Email and AgreeTerms are
// required: certmagic would otherwise prompt on stdin.
type ACMEOptions struct {
	Directory  string
	Email      string
	AgreeTerms bool
	// Roots verifies the ACME server's own TLS certificate (system roots
	// plus a private CA); nil is the system roots.
	Roots *x509.CertPool
	// EAB binds the account to an existing one at a private CA; nil
	// for none.
	EAB *EAB
	// Challenges lists the enabled challenge types; empty enables both.
	Challenges []string
	// ListenHost, AltHTTPPort and AltTLSALPNPort tell the challenge
	// solvers where the CA's validation connections arrive (after a port
	// forward); 0 means 80 and 443. A TLS-ALPN port that one of our own
	// listeners holds is answered by that listener.
	ListenHost     string
	AltHTTPPort    int
	AltTLSALPNPort int
	// Proxy chooses the HTTP proxy of requests to the CA; nil is
	// http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)
	// DisableRenewalInfo stops using ACME Renewal Information (RFC 9773):
	// renewal orders then do not name the certificate they replace, which
	// CAs with a broken ARI implementation reject ("could not find an
	// order for the given certificate"; pebble does so intermittently).
	DisableRenewalInfo bool
}

// EAB is an ACME external account binding: the key id and the base64url
// MAC key a private CA issued for this appliance.
type EAB struct {
	KeyID  string
	MACKey string
}

// FilesOptions names the operator's PEM files. The certificate file holds
// the leaf followed by any intermediates; both files are re-read on
// Reload and whenever their content changes (checked every
// PollInterval; 0 is DefaultPollInterval, negative disables polling).
type FilesOptions struct {
	Cert         string
	Key          string
	PollInterval time.Duration
}

// validate checks what New cannot work without.
func (o *Options) validate() error {
	switch o.Source {
	case SourceOff:
		return nil
	case SourceACME, SourceLocalCA, SourceFiles:
	default:
		return fmt.Errorf("unknown certificate source %q (want %s, %s, %s or %s)", o.Source, SourceACME, SourceLocalCA, SourceFiles, SourceOff)
	}
	for _, n := range o.Names {
		if err := CheckName(n); err != nil {
			return err
		}
	}
	switch o.Source {
	case SourceACME:
		a := o.ACME
		if len(o.Names) == 0 {
			return errors.New("ACME needs at least one name, the public DNS name GitLab uses to reach the appliance")
		}
		if a.Directory == "" {
			return errors.New("ACME needs the directory URL of the CA")
		}
		if a.Email == "" || !a.AgreeTerms {
			return errors.New("ACME needs an account email and agreement to the CA's terms, given in configuration (never asked interactively)")
		}
		for _, c := range a.Challenges {
			if c != ChallengeHTTP01 && c != ChallengeTLSALPN01 {
				return fmt.Errorf("unknown ACME challenge %q (want %s or %s)", c, ChallengeHTTP01, ChallengeTLSALPN01)
			}
		}
		if a.EAB != nil && (a.EAB.KeyID == "" || a.EAB.MACKey == "") {
			return errors.New("ACME external account binding needs both a key id and a MAC key")
		}
	case SourceLocalCA:
		if len(o.Names) == 0 {
			return errors.New("the local CA needs at least one name to issue for")
		}
		if o.StateDir == "" {
			return errors.New("the local CA needs a state directory")
		}
	case SourceFiles:
		if o.Files.Cert == "" || o.Files.Key == "" {
			return errors.New("operator certificates need both a certificate file and a key file")
		}
	}
	if o.Source != SourceFiles && o.StateDir == "" {
		return errors.New("managed certificates need a state directory for their storage")
	}
	return nil
}

// CheckName returns nil for an IP address or a DNS name a certificate can
// cover (a "*" allowed as the whole leftmost label), else what is wrong.
func CheckName(n string) error {
	if net.ParseIP(n) != nil {
		return nil
	}
	return checkHostname(n)
}
