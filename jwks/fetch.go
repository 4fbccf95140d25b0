package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const discoveryPath = "/.well-known/openid-configuration"

// Run fetches the key set and keeps it fresh until ctx is done; start it in
// its own goroutine (it does not return after the first fetch). The first
// fetch starts immediately and is retried with backoff and jitter until it
// succeeds; fetch errors never end Run. After a success the next refresh is
// scheduled per the JWKS response's Cache-Control max-age, clamped to
// [MinRefresh, MaxRefresh]. After a failure the last good keys stay in use
// and the fetch is retried with backoff. Lookups of unknown kids can pull a
// fetch forward (see Key).
//
// Run returns nil when ctx is done, or an error at once if the Set is
// already running.
func (s *Set) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("jwks: Run is already running")
	}
	defer s.stop()
	for {
		r := s.startRound()
		res, err := s.fetch(ctx)
		if ctx.Err() != nil {
			s.endRound(r)
			return nil
		}
		wait := s.record(res, err)
		s.endRound(r)
		if s.o.OnChange != nil {
			s.o.OnChange(s.Status())
		}
		timer := s.o.After(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-timer:
				break waiting
			case <-s.wake:
				if s.hasPending() {
					break waiting
				}
			}
		}
	}
}

// startRound moves a pending lookup round (if any) in flight.
func (s *Set) startRound() *round {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pending
	if r == nil {
		r = &round{done: make(chan struct{})}
	}
	s.pending, s.inflight = nil, r
	return r
}

func (s *Set) endRound(r *round) {
	s.mu.Lock()
	if s.inflight == r {
		s.inflight = nil
	}
	s.mu.Unlock()
	close(r.done)
}

func (s *Set) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending != nil
}

// stop releases waiters when Run ends.
func (s *Set) stop() {
	s.mu.Lock()
	r := s.pending
	s.pending = nil
	s.running.Store(false)
	s.mu.Unlock()
	if r != nil {
		close(r.done)
	}
}

// fetchResult is one successful discovery + JWKS round.
type fetchResult struct {
	snap    *snapshot
	jwksURI string
	maxAge  time.Duration // -1: none
}

// record publishes a successful result or records a failure, logs it, and
// returns how long to wait before the next fetch.
func (s *Set) record(res *fetchResult, err error) time.Duration {
	now := s.o.Now()
	s.mu.Lock()
	s.st.Fetches++
	s.st.LastFetch = now
	var wait time.Duration
	var changed, recovered bool
	if err != nil {
		s.lastErr = err
		s.st.Failures++
		s.st.ConsecutiveFailures++
		s.st.LastError = err.Error()
		wait = s.backoff(s.st.ConsecutiveFailures)
	} else {
		old := s.cur.Swap(res.snap)
		changed = old == nil || !slices.Equal(old.info, res.snap.info)
		recovered = s.st.ConsecutiveFailures > 0
		s.lastErr = nil
		s.st.Ready = true
		s.st.KeyCount = len(res.snap.all)
		s.st.JWKSURI = res.jwksURI
		s.st.LastSuccess = now
		s.st.LastError = ""
		s.st.ConsecutiveFailures = 0
		wait = s.refreshInterval(res.maxAge)
	}
	s.st.NextFetch = now.Add(wait)
	st := s.st
	s.mu.Unlock()

	log := s.o.Logger.With("issuer_host", s.issuer.Host)
	if err != nil {
		log.Warn("jwks: fetch failed; keeping last good keys",
			"error", err, "ready", st.Ready, "key_count", st.KeyCount,
			"consecutive_failures", st.ConsecutiveFailures, "retry_in", wait.String())
		return wait
	}
	attrs := []any{"key_count", st.KeyCount, "skipped", len(res.snap.skipped), "next_in", wait.String()}
	if changed || recovered {
		log.Info("jwks: fetched key set", attrs...)
	} else {
		log.Debug("jwks: fetched key set (unchanged)", attrs...)
	}
	if changed {
		for _, why := range res.snap.skipped {
			log.Warn("jwks: ignored key", "reason", why)
		}
	}
	return wait
}

// backoff returns the wait after the n-th consecutive failure (n >= 1).
func (s *Set) backoff(n int) time.Duration {
	return s.o.Backoff.Delay(n, s.o.Rand())
}

// refreshInterval clamps a Cache-Control max-age (-1 for none) to the bounds.
func (s *Set) refreshInterval(maxAge time.Duration) time.Duration {
	d := maxAge
	if d < 0 {
		d = DefaultRefresh
	}
	return min(max(d, s.o.MinRefresh), s.o.MaxRefresh)
}

// maxAge extracts max-age from a Cache-Control header. It returns -1 when
// there is none, or when no-store or no-cache is present.
func maxAge(h http.Header) time.Duration {
	age := time.Duration(-1)
	for _, v := range h.Values("Cache-Control") {
		for dir := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return -1
			case "max-age":
				n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(val), `"`), 10, 63)
				if errors.Is(err, strconv.ErrRange) {
					n = math.MaxInt64 // RFC 9111 §1.2.2: overflow means "very large"
				} else if err != nil {
					continue
				}
				age = time.Duration(min(n, uint64(365*24*time.Hour/time.Second))) * time.Second
			}
		}
	}
	return age
}

// fetch runs one discovery + JWKS round.
func (s *Set) fetch(ctx context.Context) (*fetchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.FetchTimeout)
	defer cancel()
	disc := s.issuer.JoinPath(discoveryPath)
	body, _, err := s.get(ctx, disc)
	if err != nil {
		return nil, fmt.Errorf("OIDC discovery: %w", err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("OIDC discovery %s: invalid JSON: %w", disc.Redacted(), err)
	}
	if doc.JWKSURI == "" {
		return nil, fmt.Errorf("OIDC discovery %s: no jwks_uri", disc.Redacted())
	}
	ju, err := disc.Parse(doc.JWKSURI)
	if err != nil {
		return nil, fmt.Errorf("OIDC discovery: invalid jwks_uri: %w", err)
	}
	if err := s.checkURL(ju); err != nil {
		return nil, fmt.Errorf("OIDC discovery: refusing jwks_uri: %w", err)
	}
	body, hdr, err := s.get(ctx, ju)
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	snap, err := parseSet(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", ju.Redacted(), err)
	}
	return &fetchResult{snap: snap, jwksURI: ju.Redacted(), maxAge: maxAge(hdr)}, nil
}

// checkURL enforces https and, unless AllowCrossHost, the issuer's host.
func (s *Set) checkURL(u *url.URL) error {
	if u.Scheme != "https" {
		return fmt.Errorf("%s is not https", u.Redacted())
	}
	if u.User != nil {
		return fmt.Errorf("%s carries credentials", u.Redacted())
	}
	if !s.o.AllowCrossHost && !sameHost(u, s.issuer) {
		return fmt.Errorf("%s is not on the issuer's host %s (set AllowCrossHost to permit)", u.Redacted(), s.issuer.Host)
	}
	return nil
}

func sameHost(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		return "443"
	}
	return strings.EqualFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), ".")) &&
		port(a) == port(b)
}

// get fetches u, accepting only 200 and at most MaxBody bytes.
func (s *Set) get(ctx context.Context, u *url.URL) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, fmt.Errorf("timed out: %w", err)
		}
		return nil, nil, err // *url.Error names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("GET %s: status %s", u.Redacted(), resp.Status)
	}
	if resp.ContentLength > s.o.MaxBody {
		return nil, nil, fmt.Errorf("GET %s: body of %d bytes exceeds limit of %d", u.Redacted(), resp.ContentLength, s.o.MaxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.o.MaxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: reading body: %w", u.Redacted(), err)
	}
	if int64(len(body)) > s.o.MaxBody {
		return nil, nil, fmt.Errorf("GET %s: body exceeds limit of %d bytes", u.Redacted(), s.o.MaxBody)
	}
	return body, resp.Header, nil
}
