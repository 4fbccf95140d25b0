package gitlabtest

import "net/http"

// SetAdmin makes the issuer's Handler also serve the admin API stand-in
// (AdminPath, TokenSelfPath, UserPath under the issuer URL's path), so the demo's one
// GitLab answers both the gateway's key fetches and `gitlab connect`.
func (i *Issuer) SetAdmin(a *Admin) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.admin = a
}

// adminRoute returns the admin API handler for path, nil if it is not one
// of its paths or no admin API is set.
func (i *Issuer) adminRoute(prefix, path string) http.Handler {
	i.mu.RLock()
	a := i.admin
	i.mu.RUnlock()
	if a == nil || (path != prefix+AdminPath && path != prefix+TokenSelfPath && path != prefix+UserPath) {
		return nil
	}
	return http.StripPrefix(prefix, a.Handler())
}
