package secret

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/backoff"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Attester fetches an attestation document for a nonce (the API Client, or
// a fake in tests).
type Attester interface {
	Attest(ctx context.Context, nonce []byte) ([]byte, error)
}

// Manager defaults.
const (
	DefaultSecretLifetime   = 45 * time.Minute
	DefaultRotateBefore     = 10 * time.Minute
	DefaultReattestInterval = time.Hour
	DefaultBackoffInitial   = time.Second
	DefaultBackoffMax       = time.Minute
	DefaultBackoffJitter    = 0.5
)

// maxWait bounds one sleep of the loop, so a suspended machine or a wall
// clock jump is noticed within a minute rather than at a stale deadline.
const maxWait = time.Minute

// ErrRunning is returned by Run when the Manager is already running.
var ErrRunning = errors.New("secret manager already running")

// Options configure a Manager. Attester, Exchanger and Verifier are
// required; zero durations take the defaults.
type Options struct {
	Attester  Attester
	Exchanger Exchanger
	Verifier  *attest.Verifier
	// SecretLifetime is how long a secret is used after its exchange
	// started; default 45m, at most the server's 1h lease.
	SecretLifetime time.Duration
	// RotateBefore starts the next exchange this long before expiry, so a
	// request never waits for one; default 10m, less than SecretLifetime.
	RotateBefore time.Duration
	// ReattestInterval is the time between attestations; default 1h.
	ReattestInterval time.Duration
	// Backoff spaces retries after failures.
	Backoff Backoff
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives state changes; nil discards. Keys are never logged,
	// IDs only as ShortID.
	Logger *slog.Logger
	// OnChange, if set, receives a Status after each change of trust state.
	// Calls are serialized with the Manager's attestations and exchanges:
	// it must return quickly and must not call Invalidate.
	OnChange func(Status)
}

// Backoff is the retry schedule after failures (see internal/backoff): the
// n-th consecutive failure waits min(Initial·2ⁿ⁻¹, Max), less up to Jitter
// of that at random so many proxies do not retry in lockstep. Zero fields
// take the Default* values; a negative Jitter disables jitter.
type Backoff = backoff.Policy

// Status is a snapshot of the Manager for readiness probes and the UI. It
// never contains key material.
type Status struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"` // why not Ready
	// Attestation is the last verification result, accepted or rejected.
	// It is shared: treat it as read-only.
	Attestation         *attest.Result `json:"attestation,omitempty"`
	LastAttestedAt      time.Time      `json:"last_attested_at,omitzero"`
	NextAttestationAt   time.Time      `json:"next_attestation_at,omitzero"`
	SecretID            string         `json:"secret_id,omitempty"` // ShortID only
	SecretCreatedAt     time.Time      `json:"secret_created_at,omitzero"`
	SecretExpiresAt     time.Time      `json:"secret_expires_at,omitzero"`
	Rotations           uint64         `json:"rotations"` // secrets installed after the first
	ExchangeFailures    uint64         `json:"exchange_failures"`
	AttestationFailures uint64         `json:"attestation_failures"`
	LastError           string         `json:"last_error,omitempty"` // cleared by a successful cycle
}

// published is what the request path reads: one atomic load, no lock.
type published struct {
	secret *Secret
	// prev is the secret the last rotation replaced while trust held:
	// streams that started under it may finish (the server's lease runs
	// on). Revocation publishes no prev.
	prev      *Secret
	reason    error // why there is no secret (secret == nil)
	rotateErr error // why the last rotation failed (secret != nil)
}

// state is the control-plane state. It is written only by the holder of
// the op lock, and then also under mu; so op holders read it freely and
// Status reads it under mu.
type state struct {
	meshCA          *x509.Certificate
	result          *attest.Result
	lastAttestedAt  time.Time
	nextAttestAt    time.Time
	exchangeFailed  bool // re-attest before the next exchange
	secret          *Secret
	secretMeshCA    *x509.Certificate
	secretCreatedAt time.Time
	failures        int // consecutive, drives backoff
	retryAt         time.Time
	rotations       uint64
	exchangeFails   uint64
	attestFails     uint64
	lastErr         error
}

// Manager owns the trust state for one backend: it attests, exchanges and
// rotates the inference secret in the background (Run), and serves it to the
// request path without blocking (Current). It is safe for concurrent use.
type Manager struct {
	o   Options
	log *slog.Logger

	pub atomic.Pointer[published]

	op chan struct{} // 1-slot lock serializing attestation and exchange
	mu sync.Mutex    // guards st for readers; never held across I/O
	st state

	forceAttest atomic.Bool
	wake        chan struct{}
	running     atomic.Bool
	rand        func() float64

	flightsMu sync.Mutex
	flights   map[string]*flight
	// Invalidation-driven exchanges, spaced by Backoff (under flightsMu).
	invalidations  int
	lastInvalidate time.Time
	nextInvalidate time.Time
	// sleep waits d unless ctx ends first (false); tests drive the clock.
	sleep func(ctx context.Context, d time.Duration) bool
}

// NewManager validates o, applies defaults and returns a Manager that is
// not ready until Run (or Invalidate) completes an attestation and an
// exchange.
func NewManager(o Options) (*Manager, error) {
	if o.Attester == nil || o.Exchanger == nil || o.Verifier == nil {
		return nil, errors.New("secret manager: Attester, Exchanger and Verifier are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.SecretLifetime, DefaultSecretLifetime)
	def(&o.RotateBefore, DefaultRotateBefore)
	def(&o.ReattestInterval, DefaultReattestInterval)
	o.Backoff = o.Backoff.WithDefaults(Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax, Jitter: DefaultBackoffJitter})
	if o.SecretLifetime > DefaultServerTTL {
		return nil, fmt.Errorf("secret manager: secret lifetime %s exceeds the server's %s lease", o.SecretLifetime, DefaultServerTTL)
	}
	if o.RotateBefore >= o.SecretLifetime {
		return nil, fmt.Errorf("secret manager: rotate-before %s must be shorter than the secret lifetime %s", o.RotateBefore, o.SecretLifetime)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		o:       o,
		log:     log,
		op:      make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		rand:    randFloat,
		flights: map[string]*flight{},
		sleep:   sleepCtx,
	}
	m.pub.Store(&published{reason: errors.New("waiting for first attestation")})
	return m, nil
}

// Current returns the secret to encrypt with. It never blocks and does no
// I/O: one atomic load and a clock read. Without an attested, unexpired
// secret it returns a *NotReadyError (errors.Is ErrNotReady) with the
// reason.
func (m *Manager) Current() (Secret, error) {
	return m.currentAt(m.o.Now())
}

func (m *Manager) currentAt(now time.Time) (Secret, error) {
	p := m.pub.Load()
	if p.secret == nil {
		return Secret{}, &NotReadyError{Reason: p.reason}
	}
	if now.Before(p.secret.ExpiresAt) {
		return *p.secret, nil
	}
	reason := fmt.Errorf("the inference secret expired: at %s", p.secret.ExpiresAt.Format(time.RFC3339))
	if p.rotateErr != nil {
		reason = fmt.Errorf("%w; rotation failing: %w", reason, p.rotateErr)
	}
	return Secret{}, &NotReadyError{Reason: reason}
}

// Reattest asks the loop to attest again now, even while backing off. It
// does not block; requests made while one is pending coalesce.
func (m *Manager) Reattest() {
	m.forceAttest.Store(true)
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Status returns a snapshot of the trust state.
func (m *Manager) Status() Status {
	now := m.o.Now()
	_, err := m.currentAt(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.st
	s := Status{
		Ready:               err == nil,
		Attestation:         st.result,
		LastAttestedAt:      st.lastAttestedAt,
		NextAttestationAt:   st.nextAttestAt,
		Rotations:           st.rotations,
		ExchangeFailures:    st.exchangeFails,
		AttestationFailures: st.attestFails,
	}
	if nr, ok := errors.AsType[*NotReadyError](err); ok && nr.Reason != nil {
		s.Reason = nr.Reason.Error()
	}
	if st.secret != nil {
		s.SecretID = ShortID(st.secret.ID)
		s.SecretCreatedAt = st.secretCreatedAt
		s.SecretExpiresAt = st.secret.ExpiresAt
	}
	if st.lastErr != nil {
		s.LastError = st.lastErr.Error()
	}
	return s
}

// Run keeps the secret fresh until ctx is done: attest, exchange, rotate
// before expiry, re-attest every ReattestInterval, and back off after
// failures. It returns nil when ctx is done, ErrRunning if already running.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer m.running.Store(false)
	for {
		wait := min(m.step(ctx), maxWait)
		if ctx.Err() != nil {
			return nil
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-m.wake:
			t.Stop()
		}
	}
}

// step does whatever is due now and returns how long until something is
// due next. Tests drive the Manager through it with a fake clock.
func (m *Manager) step(ctx context.Context) time.Duration {
	if !m.lock(ctx) {
		return 0
	}
	defer m.unlock()
	now := m.o.Now()
	forced := m.forceAttest.Load()
	if !forced && now.Before(m.st.retryAt) {
		return m.st.retryAt.Sub(now)
	}
	if forced || m.needAttest(now) {
		if err := m.attestLocked(ctx); err != nil {
			return m.failedLocked(ctx, err)
		}
	}
	if m.needExchange(now) {
		if err := m.exchangeLocked(ctx); err != nil {
			return m.failedLocked(ctx, err)
		}
	}
	m.succeededLocked()
	return m.nextDue(m.o.Now())
}

func (m *Manager) needAttest(now time.Time) bool {
	return m.st.meshCA == nil || m.st.exchangeFailed || !now.Before(m.st.nextAttestAt)
}

// needExchange: no secret, rotation due, or the secret came from a trust
// state (mesh CA, manifest) that the last attestation no longer shows.
func (m *Manager) needExchange(now time.Time) bool {
	s := m.st.secret
	return s == nil ||
		!now.Before(s.ExpiresAt.Add(-m.o.RotateBefore)) ||
		!m.st.secretMeshCA.Equal(m.st.meshCA) ||
		(m.st.result != nil && s.ManifestSHA256 != m.st.result.ManifestSHA256)
}

func (m *Manager) nextDue(now time.Time) time.Duration {
	next := m.st.nextAttestAt
	if s := m.st.secret; s != nil {
		if r := s.ExpiresAt.Add(-m.o.RotateBefore); r.Before(next) {
			next = r
		}
	}
	return max(next.Sub(now), 0)
}

// attestLocked runs one attestation. On failure the secret and the mesh CA
// are revoked at once: no more data goes to a backend that no longer
// attests. A cancelled ctx is our shutdown, not the backend's fault, and
// revokes nothing.
func (m *Manager) attestLocked(ctx context.Context) error {
	m.forceAttest.Store(false)
	nonce := make([]byte, attest.NonceSize)
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go ≥1.24)
	raw, err := m.o.Attester.Attest(ctx, nonce)
	var res *attest.Result
	if err == nil {
		var doc *attest.Doc
		if doc, err = attest.ParseDoc(raw); err == nil {
			res, err = m.o.Verifier.VerifyDoc(ctx, doc, nonce)
			if err == nil {
				var meshCA *x509.Certificate
				if meshCA, err = attest.ParseCACert(doc.MeshCA); err == nil {
					m.attested(res, meshCA)
					return nil
				}
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	verb := "failed"
	if attest.ClassOf(err) != "" {
		verb = "rejected"
	}
	err = fmt.Errorf("attestation %s: %w", verb, err)
	m.mu.Lock()
	m.st.attestFails++
	if res != nil {
		m.st.result = res
	}
	m.st.meshCA, m.st.secret, m.st.secretMeshCA = nil, nil, nil
	m.st.lastErr = err
	m.mu.Unlock()
	m.pub.Store(&published{reason: err})
	m.log.Warn("attestation failed; inference secret revoked", "error", err, "class", string(attest.ClassOf(err)))
	m.notify()
	return err
}

func (m *Manager) attested(res *attest.Result, meshCA *x509.Certificate) {
	now := m.o.Now()
	m.mu.Lock()
	m.st.meshCA, m.st.result = meshCA, res
	m.st.lastAttestedAt, m.st.nextAttestAt = now, now.Add(m.o.ReattestInterval)
	m.st.exchangeFailed = false
	m.mu.Unlock()
	m.log.Info("backend attested", "platform", string(res.Platform), "manifest_sha256", res.ManifestSHA256,
		"next_attestation", m.st.nextAttestAt)
	m.notify()
}

// exchangeLocked runs one exchange against the attested mesh CA and
// installs the secret. A failed exchange keeps the current secret, which
// stays valid until it expires, and forces a re-attestation first next
// time (the mesh CA may have rotated).
func (m *Manager) exchangeLocked(ctx context.Context) error {
	start := m.o.Now()
	s, err := Exchange(ctx, m.o.Exchanger, m.st.meshCA, start)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("secret exchange failed: %w", err)
		m.mu.Lock()
		m.st.exchangeFails++
		m.st.exchangeFailed = true
		m.st.lastErr = err
		m.mu.Unlock()
		if cur := m.st.secret; cur != nil {
			m.pub.Store(&published{secret: cur, prev: m.pub.Load().prev, rotateErr: err})
		} else {
			m.pub.Store(&published{reason: err})
		}
		m.log.Warn("secret exchange failed", "error", err)
		m.notify()
		return err
	}
	// The server's lease starts when it receives the request, after start:
	// counting from start keeps our expiry ahead of the server's.
	s.ExpiresAt = start.Add(m.o.SecretLifetime)
	if m.st.result != nil {
		s.ManifestSHA256 = m.st.result.ManifestSHA256
	}
	m.mu.Lock()
	if m.st.secret != nil {
		m.st.rotations++
	}
	m.st.secret, m.st.secretMeshCA, m.st.secretCreatedAt = &s, m.st.meshCA, start
	m.st.exchangeFailed = false
	m.mu.Unlock()
	m.pub.Store(&published{secret: &s, prev: m.pub.Load().secret})
	m.log.Info("inference secret installed", "secret", s)
	m.notify()
	return nil
}

// failedLocked records a failure for backoff and returns the wait.
func (m *Manager) failedLocked(ctx context.Context, err error) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.failures++
	d := m.o.Backoff.Delay(m.st.failures, m.rand())
	if se, ok := errors.AsType[*StatusError](err); ok && se.RetryAfter > d {
		d = min(se.RetryAfter, m.o.Backoff.Max)
	}
	m.st.retryAt = now.Add(d)
	return d
}

func (m *Manager) succeededLocked() {
	m.mu.Lock()
	m.st.failures, m.st.retryAt, m.st.lastErr = 0, time.Time{}, nil
	m.mu.Unlock()
}

func (m *Manager) notify() {
	if m.o.OnChange != nil {
		m.o.OnChange(m.Status())
	}
}

// lock takes the op lock unless ctx ends first.
func (m *Manager) lock(ctx context.Context) bool {
	select {
	case m.op <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Manager) unlock() { <-m.op }
