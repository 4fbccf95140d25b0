// Package jwks fetches, caches and publishes JSON Web Key Sets, resilient to
// the issuer being down.
//
// A Set discovers GitLab's JWKS via OpenID discovery, prefetches it in the
// background with retry, backoff and jitter (never blocking start-up and
// never giving up), refreshes it per Cache-Control and keeps the last good
// keys when a refresh fails. Lookups are lock-free. Unknown kids trigger at
// most one refetch per Options.UnknownKidInterval. Until the first success,
// lookups fail with ErrNotReady (callers should answer 503, not 401).
//
// Publish and Thumbprint serialise our own public keys with RFC 7638 kids.
// jwx (github.com/lestrrat-go/jwx/v3/jwk) is used only to parse and
// serialise keys; the fetch loop is our own.
package jwks

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrNotReady means no key set has been fetched successfully yet. The
	// returned error wraps it and reads "waiting for GitLab keys: <last
	// fetch error>".
	ErrNotReady = errors.New("waiting for GitLab keys")
	// ErrUnknownKey means the current key set has no key with the given kid,
	// even after any refetch the lookup was allowed to trigger.
	ErrUnknownKey = errors.New("jwks: unknown key id")
)

// Key describes one usable key in the fetched set, for status pages. It
// holds no key material beyond the public thumbprint.
type Key struct {
	KID        string `json:"kid,omitempty"`
	Kty        string `json:"kty"`
	Alg        string `json:"alg,omitempty"`
	Use        string `json:"use,omitempty"`
	Thumbprint string `json:"thumbprint"` // RFC 7638, base64url SHA-256
	Bits       int    `json:"bits,omitempty"`
}

// Status is a snapshot of a Set's health. Zero times mean "never".
type Status struct {
	Ready               bool      `json:"ready"` // at least one successful fetch
	KeyCount            int       `json:"key_count"`
	JWKSURI             string    `json:"jwks_uri,omitempty"` // last discovered
	LastFetch           time.Time `json:"last_fetch"`         // last attempt (end)
	LastSuccess         time.Time `json:"last_success"`
	NextFetch           time.Time `json:"next_fetch"`
	LastError           string    `json:"last_error,omitempty"` // of the last attempt; empty after a success
	Fetches             uint64    `json:"fetches"`              // attempts
	Failures            uint64    `json:"failures"`             // failed attempts
	ConsecutiveFailures int       `json:"consecutive_failures"`
}

// snapshot is an immutable, published key set.
type snapshot struct {
	byKID   map[string]crypto.PublicKey
	all     []crypto.PublicKey
	info    []Key
	skipped []string // reasons for entries that were ignored
}

// round is one fetch that lookups can wait for; done is closed when it ends.
type round struct{ done chan struct{} }

// Set is a cached, self-refreshing JWKS. Create it with New and start Run in
// its own goroutine. All methods are safe for concurrent use.
type Set struct {
	o      Options
	issuer *url.URL
	client *http.Client

	cur     atomic.Pointer[snapshot]
	running atomic.Bool
	wake    chan struct{} // capacity 1: a pending round wants a fetch now

	mu          sync.Mutex
	st          Status
	lastErr     error
	pending     *round // requested, not started
	inflight    *round // started, not finished
	lastTrigger time.Time
}

// New validates o and returns a Set with no keys. It performs no I/O.
func New(o Options) (*Set, error) {
	o, u, err := o.normalize()
	if err != nil {
		return nil, err
	}
	s := &Set{o: o, issuer: u, wake: make(chan struct{}, 1)}
	var c http.Client
	if o.HTTPClient != nil {
		c = *o.HTTPClient
	}
	prev := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := s.checkURL(req.URL); err != nil {
			return fmt.Errorf("refusing redirect: %w", err)
		}
		if prev != nil {
			return prev(req, via)
		}
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		return nil
	}
	s.client = &c
	return s, nil
}

// Key returns the public key with the given kid. It never blocks on I/O
// when the kid is known.
//
// If no key set has been fetched yet it returns an error wrapping
// ErrNotReady with the last fetch error. If the kid is unknown it triggers a
// refetch, at most one per UnknownKidInterval across all callers, and waits
// for that refetch (or one already in flight) until ctx is done; if the kid
// is still unknown, or the refetch was rate-limited, or Run is not running,
// it returns an error wrapping ErrUnknownKey. An empty kid is never looked
// up: use All for tokens without a kid.
func (s *Set) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	snap := s.cur.Load()
	if snap == nil {
		return nil, s.notReady()
	}
	if k, ok := snap.byKID[kid]; ok {
		return k, nil
	}
	if kid == "" {
		return nil, fmt.Errorf("%w: token has no kid", ErrUnknownKey)
	}
	if r := s.requestRefetch(); r != nil {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w %q: %w", ErrUnknownKey, clip(kid), ctx.Err())
		}
		if k, ok := s.cur.Load().byKID[kid]; ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKey, clip(kid))
}

// requestRefetch returns the round a missed lookup should wait for, or nil
// if it must not wait: Run is not running, or a refetch was triggered less
// than UnknownKidInterval ago and none is pending or in flight.
func (s *Set) requestRefetch() *round {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running.Load() { // checked under mu: stop() releases rounds under mu
		return nil
	}
	if s.pending != nil {
		return s.pending
	}
	now := s.o.Now()
	if s.lastTrigger.IsZero() || now.Sub(s.lastTrigger) >= s.o.UnknownKidInterval {
		s.lastTrigger = now
		s.pending = &round{done: make(chan struct{})}
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return s.pending
	}
	return s.inflight
}

func (s *Set) notReady() error {
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	if last == nil {
		return fmt.Errorf("%w: first fetch has not completed", ErrNotReady)
	}
	return fmt.Errorf("%w: %w", ErrNotReady, last)
}

// All returns every usable key, including keys without a kid, for tokens
// that carry no kid. It returns nil before the first successful fetch. The
// slice is a copy; the keys are shared and must not be modified.
func (s *Set) All() []crypto.PublicKey {
	if snap := s.cur.Load(); snap != nil {
		return slices.Clone(snap.all)
	}
	return nil
}

// Keys returns a description of every usable key, in JWKS order, or nil
// before the first successful fetch.
func (s *Set) Keys() []Key {
	if snap := s.cur.Load(); snap != nil {
		return slices.Clone(snap.info)
	}
	return nil
}

// Status returns a snapshot of the Set's health.
func (s *Set) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// clip shortens attacker-controlled kids before they reach errors and logs.
func clip(kid string) string {
	const n = 64
	if len(kid) > n {
		return kid[:n] + "…"
	}
	return kid
}

// Ready reports whether a key set has been loaded; validators use it to
// answer "keys not loaded yet" (503) rather than "invalid token" (401) for
// tokens without a kid.
func (s *Set) Ready() bool { return s.Status().Ready }
