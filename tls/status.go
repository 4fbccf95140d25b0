package tls

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// Status is the certificate state for status pages and metrics.
type Status struct {
	Source    string `json:"source"`
	Plaintext bool   `json:"plaintext"`
	// Ready is true when every configured name has a valid certificate
	// (always with the source off); Reason says what is missing.
	Ready        bool                `json:"ready"`
	Reason       string              `json:"reason,omitempty"`
	Names        []string            `json:"names,omitempty"`
	Certificates []CertificateStatus `json:"certificates"`
	Warnings     []string            `json:"warnings,omitempty"`
	// CACertificate is the local CA's certificate (PEM) that clients
	// must trust; empty for other sources.
	CACertificate string `json:"ca_certificate,omitempty"`
}

// CertificateStatus describes one certificate being served.
type CertificateStatus struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// ExpiresSoon: an operator certificate within the expiry warning, or
	// a managed one that should long have been renewed.
	ExpiresSoon bool `json:"expires_soon"`
	// Managed certificates are renewed automatically (ACME, local CA);
	// operator certificates are replaced by the operator.
	Managed bool `json:"managed"`
	// LastRenewalAt is when this process last obtained or renewed it.
	LastRenewalAt time.Time `json:"last_renewal_at,omitzero"`
	// LastError is the last failed attempt to obtain, renew or reload
	// it, cleared by a success.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Ready reports whether every configured name has a usable certificate,
// and if not, why.
func (m *Manager) Ready() (bool, string) {
	st := m.Status()
	return st.Ready, st.Reason
}

// Status returns the current certificate state.
func (m *Manager) Status() Status {
	st := Status{Source: m.o.Source, Names: slices.Clone(m.o.Names), Certificates: []CertificateStatus{}}
	if m.cache == nil {
		st.Plaintext, st.Ready = true, true
		st.Warnings = append(st.Warnings, "plain HTTP (tls.source: off): tokens and source code cross the network unencrypted unless another hop terminates TLS in front of the appliance")
		return st
	}
	if m.ca != nil {
		st.CACertificate = string(m.ca.CertificatePEM())
	}
	now := m.now()
	seen := map[string]bool{}
	var missing []string
	for _, name := range m.o.Names {
		c, ok := m.current(name, now)
		if !ok {
			missing = append(missing, name)
			continue
		}
		if seen[c.Hash()] {
			continue
		}
		seen[c.Hash()] = true
		cs := m.certStatus(c)
		if left := cs.NotAfter.Sub(now); left < m.warnWindow(cs) {
			cs.ExpiresSoon = true
			st.Warnings = append(st.Warnings, m.expiryWarning(cs, left))
		}
		st.Certificates = append(st.Certificates, cs)
	}
	if m.files != nil {
		m.files.mu.Lock()
		if m.files.err != "" {
			st.Warnings = append(st.Warnings, "operator certificate files cannot be used (still serving the previous certificate): "+m.files.err)
		}
		m.files.mu.Unlock()
	}
	st.Ready = len(missing) == 0
	if !st.Ready {
		st.Reason = m.missingReason(missing)
	}
	return st
}

// current is the certificate a handshake for name would get now: the
// cached one valid the longest.
func (m *Manager) current(name string, now time.Time) (certmagic.Certificate, bool) {
	var best certmagic.Certificate
	found := false
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf == nil || now.After(c.Leaf.NotAfter) || now.Before(c.Leaf.NotBefore) {
			continue
		}
		if !found || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best, found = c, true
		}
	}
	return best, found
}

func (m *Manager) certStatus(c certmagic.Certificate) CertificateStatus {
	cs := CertificateStatus{
		Names:     certNames(c.Leaf),
		Issuer:    c.Leaf.Issuer.CommonName,
		Serial:    fmt.Sprintf("%X", c.Leaf.SerialNumber),
		NotBefore: c.Leaf.NotBefore.UTC(),
		NotAfter:  c.Leaf.NotAfter.UTC(),
		Managed:   m.files == nil,
	}
	if cs.Issuer == "" && len(c.Leaf.Issuer.Organization) > 0 {
		cs.Issuer = c.Leaf.Issuer.Organization[0]
	}
	if m.files != nil {
		m.files.mu.Lock()
		cs.LastRenewalAt = m.files.loadedAt
		cs.LastError, cs.LastErrorAt = m.files.err, m.files.errAt
		m.files.mu.Unlock()
		return cs
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range c.Names {
		if ev := m.events[n]; ev != nil {
			if ev.obtainedAt.After(cs.LastRenewalAt) {
				cs.LastRenewalAt = ev.obtainedAt
			}
			if ev.err != "" && ev.errAt.After(cs.LastErrorAt) {
				cs.LastError, cs.LastErrorAt = ev.err, ev.errAt
			}
		}
	}
	return cs
}

// warnWindow is how long before expiry a certificate is worth a warning:
// ExpiryWarning for operator certificates; for managed ones only once
// certmagic should long have renewed it (it renews with a third left), so
// short-lived local leaves do not warn all their life.
func (m *Manager) warnWindow(cs CertificateStatus) time.Duration {
	if !cs.Managed {
		return m.o.ExpiryWarning
	}
	return min(m.o.ExpiryWarning, cs.NotAfter.Sub(cs.NotBefore)/4)
}

func (m *Manager) expiryWarning(cs CertificateStatus, left time.Duration) string {
	when := fmt.Sprintf("expires on %s (in %d days)", cs.NotAfter.Format(time.DateOnly), int(left.Hours()/24))
	switch {
	case !cs.Managed:
		return fmt.Sprintf("operator certificate for %s %s: install a renewed one and reload (SIGHUP)", strings.Join(cs.Names, ", "), when)
	case cs.LastError != "":
		return fmt.Sprintf("certificate for %s %s and renewal is failing: %s", strings.Join(cs.Names, ", "), when, cs.LastError)
	default:
		return fmt.Sprintf("certificate for %s %s and has not been renewed in time; check the logs of part=tls", strings.Join(cs.Names, ", "), when)
	}
}

// missingReason says why names have no certificate yet.
func (m *Manager) missingReason(missing []string) string {
	var why string
	switch m.o.Source {
	case SourceACME:
		why = "waiting for the ACME CA " + m.o.ACME.Directory
	case SourceLocalCA:
		why = "the local CA has not issued it"
	default:
		why = "the operator certificate files are not loaded"
		if m.files != nil {
			m.files.mu.Lock()
			if m.files.err != "" {
				why = m.files.err
			}
			m.files.mu.Unlock()
		}
	}
	m.mu.Lock()
	for _, n := range missing {
		if ev := m.events[n]; ev != nil && ev.err != "" {
			why += ": " + ev.err
			break
		}
	}
	m.mu.Unlock()
	return fmt.Sprintf("no valid TLS certificate for %s: %s", strings.Join(missing, ", "), why)
}
