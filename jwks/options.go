package jwks

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/backoff"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultMinRefresh         = 5 * time.Minute
	DefaultMaxRefresh         = 24 * time.Hour
	DefaultRefresh            = time.Hour // used when the response has no usable max-age
	DefaultUnknownKidInterval = 30 * time.Second
	DefaultBackoffInitial     = time.Second
	DefaultBackoffMax         = 5 * time.Minute
	DefaultBackoffJitter      = 0.2
	DefaultMaxBody            = 1 << 20 // 1 MiB
	DefaultFetchTimeout       = 10 * time.Second

	// MaxKeys is the largest number of entries accepted in one JWKS.
	MaxKeys = 100
)

// Backoff is the retry schedule after failed fetches (see internal/backoff):
// the n-th consecutive failure waits min(Initial·2ⁿ⁻¹, Max), less up to
// Jitter of that at random. Zero fields take the Default* values; a
// negative Jitter disables jitter.
type Backoff = backoff.Policy

// Options configures a Set. Only IssuerURL is required.
type Options struct {
	// IssuerURL is the GitLab base URL, e.g. "https://gitlab.example.com" or
	// "https://example.com/gitlab". It must be https. Keys are discovered at
	// IssuerURL + "/.well-known/openid-configuration" → "jwks_uri"; the path
	// prefix is kept. A key URL is never taken from a token.
	IssuerURL string
	// AllowCrossHost permits a jwks_uri (and redirects) on a host other
	// than the issuer's. The URL must still be https.
	AllowCrossHost bool

	// HTTPClient carries the caller's CA bundle, proxy and timeouts. It is
	// copied, and the copy refuses redirects that leave the issuer's host
	// or https. Nil means a client with http.DefaultTransport.
	HTTPClient *http.Client
	// FetchTimeout bounds one discovery+JWKS round (default 10s), so a
	// stalled GitLab cannot stall refreshes forever.
	FetchTimeout time.Duration

	// MinRefresh and MaxRefresh bound the Cache-Control max-age of the
	// JWKS response (defaults 5m and 24h). Without a max-age (or with
	// no-store/no-cache) the refresh interval is 1h, clamped to the bounds.
	MinRefresh, MaxRefresh time.Duration
	// UnknownKidInterval is the minimum time between refetches triggered
	// by lookups of unknown kids (default 30s).
	UnknownKidInterval time.Duration
	// Backoff is the retry schedule after failed fetches.
	Backoff Backoff

	// MaxBody caps the discovery and JWKS response bodies (default 1 MiB).
	MaxBody int64

	// Now returns the current time (default time.Now). Tests inject a fake.
	Now func() time.Time
	// After waits like time.After (the default). Tests inject a fake that
	// pairs with Now.
	After func(d time.Duration) <-chan time.Time
	// Rand returns a uniform value in [0, 1) for jitter (default
	// math/rand/v2.Float64).
	Rand func() float64

	// Logger receives fetch outcomes (issuer host, key count, error); never
	// key material. Nil discards.
	Logger *slog.Logger
	// OnChange, if set, is called from Run's goroutine after every fetch
	// attempt with the new Status. It must not block for long.
	OnChange func(Status)
}

// normalize validates o and fills in defaults. It does no I/O.
func (o Options) normalize() (Options, *url.URL, error) {
	if o.IssuerURL == "" {
		return o, nil, errors.New("jwks: IssuerURL is required")
	}
	u, err := url.Parse(strings.TrimRight(o.IssuerURL, "/"))
	if err != nil {
		return o, nil, fmt.Errorf("jwks: invalid IssuerURL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return o, nil, fmt.Errorf("jwks: IssuerURL must be an https URL without credentials, query or fragment, got %q", u.Redacted())
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinRefresh, DefaultMinRefresh)
	def(&o.MaxRefresh, DefaultMaxRefresh)
	def(&o.UnknownKidInterval, DefaultUnknownKidInterval)
	def(&o.FetchTimeout, DefaultFetchTimeout)
	if o.MinRefresh > o.MaxRefresh {
		return o, nil, fmt.Errorf("jwks: MinRefresh %v exceeds MaxRefresh %v", o.MinRefresh, o.MaxRefresh)
	}
	if o.Backoff.Jitter > 1 {
		return o, nil, fmt.Errorf("jwks: Backoff.Jitter %v is outside [0, 1]", o.Backoff.Jitter)
	}
	b := o.Backoff.WithDefaults(Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax, Jitter: DefaultBackoffJitter})
	if maxWait := cmp.Or(max(o.Backoff.Max, 0), DefaultBackoffMax); b.Initial > maxWait {
		return o, nil, fmt.Errorf("jwks: Backoff.Initial %v exceeds Backoff.Max %v", b.Initial, maxWait)
	}
	o.Backoff = b
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, u, nil
}
