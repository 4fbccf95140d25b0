package tls

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// Manager gives listeners their certificates from the configured source and
// keeps them valid: certmagic renews managed certificates in the background,
// and operator files are reloaded on Reload or when they change.
type Manager struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	cache *certmagic.Cache  // nil when Source is off
	cfg   *certmagic.Config // nil when Source is off
	ca    *LocalCA          // SourceLocalCA only
	files *fileSource       // SourceFiles only

	mu       sync.Mutex
	events   map[string]*nameEvents // by identifier, from certmagic's events
	stop     context.CancelFunc
	stopOnce sync.Once
	// warnedNames are the unknown server names already logged.
	warnedNames map[string]bool
}

// nameEvents is what certmagic last told us about one identifier.
type nameEvents struct {
	obtainedAt time.Time
	renewal    bool
	err        string
	errAt      time.Time
}

// New builds a Manager; it does no network I/O and issues nothing (Start
// does), but it opens (or creates) the local CA.
func New(o Options) (*Manager, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	m := &Manager{o: o, log: o.Logger, now: o.Now, events: make(map[string]*nameEvents)}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.o.ExpiryWarning <= 0 {
		m.o.ExpiryWarning = DefaultExpiryWarning
	}
	if o.Source == SourceOff {
		return m, nil
	}
	if o.Source == SourceFiles && len(o.Names) == 0 {
		// Without configured names the certificate's own are served,
		// and reloads must keep covering them.
		names, err := fileNames(o.Files.Cert)
		if err != nil {
			return nil, err
		}
		m.o.Names = names
	}
	zl := newZapLogger(m.log)
	renewEvery := o.RenewCheckInterval
	if renewEvery <= 0 {
		renewEvery = DefaultRenewCheckInterval
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.cfg, nil },
		RenewCheckInterval: renewEvery,
		Logger:             zl,
	})
	tmpl := certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: filepath.Join(o.StateDir, statedir.CertmagicDir)},
		Logger:            zl,
		DefaultServerName: m.defaultName(),
		OnEvent:           m.onEvent,
		// Stapling fetches from the responder the certificate names:
		// outbound traffic an air-gapped site did not configure, and
		// neither the local CA nor most site PKIs run one.
		OCSP:       certmagic.OCSPConfig{DisableStapling: o.Source != SourceACME},
		DisableARI: o.ACME.DisableRenewalInfo,
	}
	m.cfg = certmagic.New(m.cache, tmpl)
	switch o.Source {
	case SourceACME:
		m.cfg.Issuers = []certmagic.Issuer{m.acmeIssuer()}
	case SourceLocalCA:
		lo := o.LocalCA
		if lo.Now == nil {
			lo.Now = m.now
		}
		ca, err := OpenLocalCA(filepath.Join(o.StateDir, statedir.LocalCADir), lo)
		if err != nil {
			m.cache.Stop()
			return nil, err
		}
		m.ca = ca
		m.cfg.Issuers = []certmagic.Issuer{ca}
	case SourceFiles:
		m.files = &fileSource{m: m, certPath: o.Files.Cert, keyPath: o.Files.Key}
	}
	return m, nil
}

// acmeIssuer builds certmagic's ACME issuer from the options.
func (m *Manager) acmeIssuer() certmagic.Issuer {
	a := m.o.ACME
	iss := certmagic.ACMEIssuer{
		CA:             a.Directory,
		Email:          a.Email,
		Agreed:         a.AgreeTerms,
		TrustedRoots:   a.Roots,
		ListenHost:     a.ListenHost,
		AltHTTPPort:    a.AltHTTPPort,
		AltTLSALPNPort: a.AltTLSALPNPort,
		HTTPProxy:      a.Proxy,
		Logger:         m.cfg.Logger,
	}
	if iss.HTTPProxy == nil {
		iss.HTTPProxy = http.ProxyFromEnvironment
	}
	if a.EAB != nil {
		iss.ExternalAccount = &acme.EAB{KeyID: a.EAB.KeyID, MACKey: a.EAB.MACKey}
	}
	if len(a.Challenges) > 0 {
		iss.DisableHTTPChallenge = !slices.Contains(a.Challenges, ChallengeHTTP01)
		iss.DisableTLSALPNChallenge = !slices.Contains(a.Challenges, ChallengeTLSALPN01)
	}
	return certmagic.NewACMEIssuer(m.cfg, iss)
}

// defaultName is the certificate chosen for a client that sends no SNI.
func (m *Manager) defaultName() string {
	if len(m.o.Names) == 0 {
		return ""
	}
	return m.o.Names[0]
}

// Source returns the configured certificate source.
func (m *Manager) Source() string { return m.o.Source }

// Start obtains or loads the certificates and starts keeping them fresh
// until Stop. The local CA and operator files are ready when Start returns
// (or it returns why not); ACME runs in the background with certmagic's
// retries, and Ready says how far it got.
func (m *Manager) Start(ctx context.Context) error {
	if m.cache == nil {
		m.log.Warn("TLS is off (tls.source: off): every listener serves plain HTTP")
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.stop = cancel
	m.mu.Unlock()
	switch m.o.Source {
	case SourceFiles:
		if err := m.files.load(ctx); err != nil {
			return err
		}
		go m.files.watch(ctx)
		return nil
	case SourceLocalCA:
		if err := m.cfg.ManageSync(ctx, m.o.Names); err != nil {
			return fmt.Errorf("issue local certificates: %w", err)
		}
		return m.reissueForeignLeaves(ctx)
	default:
		if err := m.cfg.ManageAsync(ctx, m.o.Names); err != nil {
			return fmt.Errorf("manage ACME certificates: %w", err)
		}
		m.log.Info("obtaining certificates from ACME in the background", "directory", m.o.ACME.Directory, "names", m.o.Names)
		return nil
	}
}

// Stop ends renewals and file watching; certificates already handed to
// connections stay valid for those connections.
func (m *Manager) Stop() {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		stop := m.stop
		m.mu.Unlock()
		if stop != nil {
			stop()
		}
		if m.cache != nil {
			m.cache.Stop()
		}
	})
}

// Reload re-reads operator certificate files (keeping the current
// certificate if the new files are bad), or for managed certificates runs
// a renewal check now. It is what SIGHUP does.
func (m *Manager) Reload(ctx context.Context) error {
	switch {
	case m.cache == nil:
		return nil
	case m.files != nil:
		return m.files.load(ctx)
	default:
		return m.cache.RenewManagedCertificates(ctx)
	}
}

// Renew renews every managed certificate now (force: even if not due)
// and serves the renewed one at once. On failure the current certificate
// keeps serving and the error shows in Status.
func (m *Manager) Renew(ctx context.Context, force bool) error {
	if m.cache == nil || m.files != nil {
		return nil
	}
	var errs []error
	for _, name := range m.o.Names {
		old := m.cache.AllMatchingCertificates(name)
		if err := m.cfg.RenewCertSync(ctx, name, force); err != nil {
			errs = append(errs, fmt.Errorf("renew %s: %w", name, err))
			continue
		}
		// RenewCertSync only writes storage; load the new certificate
		// before dropping the old so no handshake finds neither.
		cert, err := m.cfg.CacheManagedCertificate(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("load renewed certificate for %s: %w", name, err))
			continue
		}
		var drop []string
		for _, c := range old {
			if c.Hash() != cert.Hash() && slices.Contains(c.Names, name) {
				drop = append(drop, c.Hash())
			}
		}
		m.cache.Remove(drop)
	}
	return errors.Join(errs...)
}

// reissueForeignLeaves replaces stored leaves that the current local CA
// did not sign: certmagic keys its storage by issuer name, so after the CA
// directory is replaced (a restored backup, a new root) it would go on
// serving leaves that clients trusting the new root reject.
func (m *Manager) reissueForeignLeaves(ctx context.Context) error {
	for _, name := range m.o.Names {
		c, ok := m.current(name, m.now())
		if ok && c.Leaf.CheckSignatureFrom(m.ca.Certificate()) == nil {
			continue
		}
		m.log.Warn("the stored certificate was not issued by the current local CA; issuing a new one", "name", name)
		if err := m.Renew(ctx, true); err != nil {
			return fmt.Errorf("reissue local certificates: %w", err)
		}
		return nil
	}
	return nil
}

// onEvent records certmagic's issuance results for Status.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	id, _ := data["identifier"].(string)
	if id == "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := m.events[id]
	if ev == nil {
		ev = &nameEvents{}
		m.events[id] = ev
	}
	switch event {
	case "cert_obtained":
		ev.obtainedAt, ev.err, ev.errAt = m.now(), "", time.Time{}
		ev.renewal, _ = data["renewal"].(bool)
		issuer, _ := data["issuer"].(string)
		m.log.Info("certificate obtained", "name", id, "renewal", ev.renewal, "issuer", issuer)
	case "cert_failed":
		if err, ok := data["error"].(error); ok {
			ev.err = err.Error()
		} else {
			ev.err = "certificate request failed"
		}
		ev.errAt = m.now()
	}
	return nil
}

// modernSuites are the TLS 1.2 suites offered: forward-secret AEAD only.
// (TLS 1.3 suites are not configurable and all qualify.)
var modernSuites = []uint16{
	stdtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	stdtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	stdtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	stdtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	stdtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	stdtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig returns the TLS configuration of an HTTP/1.1 listener
// (fasthttp speaks nothing else): http/1.1 in ALPN, so clients that offer
// only h2 are refused at the handshake instead of failing later, and
// acme-tls/1 so the listener answers TLS-ALPN-01 challenges. Nil when the
// source is off.
func (m *Manager) ServerConfig() *stdtls.Config {
	if m.cfg == nil {
		return nil
	}
	tc := m.cfg.TLSConfig()
	get := tc.GetCertificate
	tc.GetCertificate = func(hello *stdtls.ClientHelloInfo) (*stdtls.Certificate, error) {
		cert, err := get(hello)
		if err != nil {
			m.warnUnknownName(hello.ServerName, err)
		}
		return cert, err
	}
	tc.NextProtos = []string{"http/1.1"}
	if m.o.Source == SourceACME {
		tc.NextProtos = append(tc.NextProtos, "acme-tls/1")
	}
	tc.MinVersion = stdtls.VersionTLS12
	tc.CipherSuites = modernSuites
	return tc
}

// Listener wraps ln in TLS with ServerConfig; with the source off it
// returns ln as it is.
func (m *Manager) Listener(ln net.Listener) net.Listener {
	tc := m.ServerConfig()
	if tc == nil {
		return ln
	}
	return stdtls.NewListener(ln, tc)
}

// maxWarnedNames bounds the set of unknown names already warned about, so
// clients sending random names cannot grow it.
const maxWarnedNames = 64

// warnUnknownName logs, once per name, a handshake that found no
// certificate: usually GitLab reaching the appliance by a name missing
// from tls.names, the most common TLS misconfiguration.
func (m *Manager) warnUnknownName(name string, err error) {
	m.mu.Lock()
	if m.warnedNames == nil {
		m.warnedNames = make(map[string]bool)
	}
	seen := m.warnedNames[name]
	if !seen && len(m.warnedNames) < maxWarnedNames {
		m.warnedNames[name] = true
	}
	m.mu.Unlock()
	if seen {
		return
	}
	if name == "" {
		m.log.Warn("a client connected without a server name and no certificate matched; set tls.names so the first name covers clients that connect by IP", "err", err)
		return
	}
	m.log.Warn("a client asked for a name no certificate covers; if that is how GitLab or IDEs reach the appliance, add it to tls.names", "name", name, "names", m.o.Names, "err", err)
}

// LocalCA returns the local CA, or nil when it is not the source.
func (m *Manager) LocalCA() *LocalCA { return m.ca }
