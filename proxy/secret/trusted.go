package secret

// Trusted reports whether the secret id is still trusted: the current one,
// or the one the last rotation replaced while the backend stayed attested.
// After a failed attestation or a withdrawn secret, no earlier secret is
// trusted again, even when a new one has been agreed since: a stream
// started under it stops.
func (m *Manager) Trusted(id string) bool {
	p := m.pub.Load()
	return p.secret != nil && (p.secret.ID == id || p.prev != nil && p.prev.ID == id)
}
