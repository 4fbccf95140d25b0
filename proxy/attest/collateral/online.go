package collateral

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/backoff"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Defaults for OnlineOptions.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultMaxBodySize   = 8 << 20 // Intel and AMD responses are at most a few hundred KiB
	DefaultRetries       = 3
	DefaultMaxRetryAfter = 60 * time.Second
)

// OnlineOptions configures Online. The zero value is usable.
type OnlineOptions struct {
	// Timeout bounds each HTTP attempt (connect to end of body); zero means
	// DefaultTimeout.
	Timeout time.Duration
	// RootCAs, when set, is the complete trust store (the appliance's one
	// outbound store); CABundle is then ignored.
	RootCAs *x509.CertPool
	// Proxy chooses the HTTP proxy; nil is http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)
	// CABundle is a PEM file whose certificates are trusted in addition to
	// the system roots, for sites whose egress proxy re-signs TLS.
	CABundle string
	// MaxBodySize bounds one response body; zero means DefaultMaxBodySize.
	MaxBodySize int64
	// Retries is how many times a 429 or 5xx response is retried; zero
	// means DefaultRetries, negative means none.
	Retries int
	// MaxRetryAfter caps the wait a Retry-After header may ask for; zero
	// means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Logger receives one line per retry; nil discards.
	Logger *slog.Logger
}

// Online fetches collateral from Intel PCS and AMD KDS over HTTPS. It only
// talks to the vendor hosts, honours HTTPS_PROXY/NO_PROXY, and is safe for
// concurrent use.
type Online struct {
	client        *http.Client
	transport     *http.Transport
	maxBody       int64
	retries       int
	maxRetryAfter time.Duration
	log           *slog.Logger

	// Test hooks: tests point allowHost at their loopback names and replace
	// sleep to observe backoff without waiting.
	allowHost func(host string) bool
	sleep     func(ctx context.Context, d time.Duration) error
	now       func() time.Time
}

// NewOnline builds the fetcher; it fails if CABundle cannot be read or holds
// no certificate, since silently falling back to the system roots would
// turn a configuration mistake into a confusing TLS error later.
func NewOnline(opts OnlineOptions) (*Online, error) {
	roots := opts.RootCAs
	if roots == nil {
		var err error
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			// Minimal containers may have no system pool; the CA bundle
			// can still make the fetcher usable.
			roots = x509.NewCertPool()
		}
	}
	if opts.CABundle != "" && opts.RootCAs == nil {
		pem, err := os.ReadFile(opts.CABundle)
		if err != nil {
			return nil, fmt.Errorf("read outbound CA bundle: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("outbound CA bundle %s: no PEM certificates found", opts.CABundle)
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	proxy := opts.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	tr := &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	o := &Online{
		transport:     tr,
		maxBody:       opts.MaxBodySize,
		retries:       opts.Retries,
		maxRetryAfter: opts.MaxRetryAfter,
		log:           opts.Logger,
		allowHost:     func(h string) bool { return vendorHosts[h] },
		sleep:         sleepCtx,
		now:           time.Now,
	}
	if o.maxBody <= 0 {
		o.maxBody = DefaultMaxBodySize
	}
	switch {
	case o.retries == 0:
		o.retries = DefaultRetries
	case o.retries < 0:
		o.retries = 0
	}
	if o.maxRetryAfter <= 0 {
		o.maxRetryAfter = DefaultMaxRetryAfter
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	o.client = &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect must satisfy the same rules as the original URL, or
		// an attacker-controlled host could feed us "collateral".
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return o.checkTarget(req.URL.String())
		},
	}
	return o, nil
}

// checkTarget enforces https and the vendor-host allowlist.
func (o *Online) checkTarget(rawURL string) error {
	u, err := checkURL(rawURL)
	if err != nil {
		return err
	}
	if !o.allowHost(u.Hostname()) || (u.Port() != "" && u.Port() != "443") {
		return fmt.Errorf("host %q is not an Intel PCS or AMD KDS host; refusing to fetch", u.Host)
	}
	return nil
}

// Collateral fetches url and returns the body with the issuer-chain and
// Content-Type headers, Source "online" and FetchedAt now. Failures are
// *attest.Error of class collateral naming the URL; they never wrap
// attest.ErrCollateralNotFound, so a Chain does not hide them.
func (o *Online) Collateral(ctx context.Context, url string) (*attest.CollateralItem, error) {
	if err := o.checkTarget(url); err != nil {
		return nil, fetchError(url, err)
	}
	for attempt := 0; ; attempt++ {
		it, retryAfter, err := o.fetchOnce(ctx, url)
		if err == nil {
			return it, nil
		}
		if retryAfter < 0 || attempt >= o.retries {
			return nil, fetchError(url, err)
		}
		wait := retrySchedule.Delay(attempt+1, 0)
		if retryAfter > 0 {
			wait = min(retryAfter, o.maxRetryAfter)
		}
		o.log.Warn("collateral fetch failed, retrying", "url", url, "attempt", attempt+1, "wait", wait, "err", err)
		if err := o.sleep(ctx, wait); err != nil {
			return nil, fetchError(url, err)
		}
	}
}

// retrySchedule spaces retries of one fetch: 1s, 2s, 4s, … capped at 30s,
// without jitter (a Retry-After from the server takes precedence).
var retrySchedule = backoff.Policy{Initial: time.Second, Max: 30 * time.Second}

func fetchError(url string, err error) error {
	return &attest.Error{Class: attest.ClassCollateral, Msg: "fetch " + url, Err: err}
}

// fetchOnce makes one attempt. retryAfter is negative when the failure is
// not worth retrying, zero for "retry with backoff", and positive for the
// server's Retry-After.
func (o *Online) fetchOnce(ctx context.Context, url string) (_ *attest.CollateralItem, retryAfter time.Duration, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, -1, err
	}
	req.Header.Set("User-Agent", "duo-confidential-collateral/1")
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused for the retry.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		err := fmt.Errorf("HTTP status %s", resp.Status)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return nil, parseRetryAfter(resp.Header.Get("Retry-After"), o.now()), err
		}
		return nil, -1, err
	}
	if resp.ContentLength > o.maxBody {
		return nil, -1, fmt.Errorf("response of %d bytes exceeds the %d byte limit", resp.ContentLength, o.maxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, o.maxBody+1))
	if err != nil {
		return nil, -1, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > o.maxBody {
		return nil, -1, fmt.Errorf("response exceeds the %d byte limit", o.maxBody)
	}
	return &attest.CollateralItem{
		URL:       url,
		Header:    filterHeader(resp.Header),
		Body:      body,
		FetchedAt: o.now().UTC().Truncate(time.Second),
		Source:    SourceOnline,
	}, 0, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything unusable
// means "use our own backoff" (0).
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
