package attest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// MaxManifestSize bounds a fetched manifest; real ones are a few KiB.
const MaxManifestSize = 1 << 20

// HTTPManifest fetches the published manifest over HTTPS (dynamic mode).
// The CDN is not trusted for integrity: the fetched bytes only say which
// manifest the operator's policy expects, and the trust log records every
// one accepted.
type HTTPManifest struct {
	URL    string
	Client *http.Client // carries timeouts, proxy and CA settings
}

// FetchManifest GETs the manifest with a cache-busting query, as the
// upstream proxy does, and requires a 200 with a bounded body.
func (h *HTTPManifest) FetchManifest(ctx context.Context) ([]byte, error) {
	u, err := url.Parse(h.URL)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("manifest URL %q must be an https URL", h.URL)
	}
	q := u.Query()
	q.Set("t", strconv.FormatInt(time.Now().UnixMilli(), 10))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest: %w", err)
	}
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	// A redirect may stay on the manifest's scheme and host only: a
	// downgrade to http or a hop elsewhere would let someone else choose
	// the policy the backend is checked against (the manifest is verified
	// against nothing but its own hash pins).
	cc := *client
	cc.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if r.URL.Scheme != u.Scheme || r.URL.Host != u.Host {
			return fmt.Errorf("manifest redirect to %s://%s refused: only %s://%s is trusted", r.URL.Scheme, r.URL.Host, u.Scheme, u.Host)
		}
		if len(via) >= 5 {
			return errors.New("manifest: too many redirects")
		}
		return nil
	}
	resp, err := cc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", h.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch manifest %s: HTTP %d", h.URL, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", h.URL, err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("fetch manifest %s: larger than %d bytes", h.URL, MaxManifestSize)
	}
	return b, nil
}
