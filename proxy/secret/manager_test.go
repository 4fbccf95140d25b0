package secret

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/verifiertest"
)

const (
	testLifetime = 45 * time.Minute
	testRotate   = 10 * time.Minute
	testReattest = time.Hour
)

type harness struct {
	api   *fakeAPI
	clock *testutil.Clock
	m     *Manager
}

func newHarness(t *testing.T, tweak func(*Options)) *harness {
	t.Helper()
	api := newFakeAPI(t)
	c := api.client(t)
	clock := testutil.NewClock(testNow)
	o := Options{
		Attester:         c,
		Exchanger:        c,
		Verifier:         verifiertest.New(t, api.b, api.b.TDXManifest, testNow),
		SecretLifetime:   testLifetime,
		RotateBefore:     testRotate,
		ReattestInterval: testReattest,
		Backoff:          Backoff{Initial: time.Second, Max: 8 * time.Second},
		Now:              clock.Now,
	}
	if tweak != nil {
		tweak(&o)
	}
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{api: api, clock: clock, m: m}
}

// mustCurrent returns the current secret and checks the backend holds the
// same key under its ID.
func (h *harness) mustCurrent(t *testing.T) Secret {
	t.Helper()
	s, err := h.m.Current()
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if k, ok := h.api.key(s.ID); !ok || k != s.Key {
		t.Fatalf("backend does not hold %v", s)
	}
	return s
}

func wantNotReady(t *testing.T, m *Manager, substr string) error {
	t.Helper()
	_, err := m.Current()
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("Current err = %v, want not ready with %q", err, substr)
	}
	if st := m.Status(); st.Ready || !strings.Contains(st.Reason, substr) {
		t.Fatalf("Status = ready %v reason %q", st.Ready, st.Reason)
	}
	return err
}

func TestManagerReadyAfterFirstAttestation(t *testing.T) {
	var changes []Status
	h := newHarness(t, func(o *Options) { o.OnChange = func(s Status) { changes = append(changes, s) } })
	wantNotReady(t, h.m, "waiting for first attestation")

	wait := h.m.step(context.Background())
	s := h.mustCurrent(t)
	if wait != testLifetime-testRotate {
		t.Errorf("next wake in %s, want the rotation time", wait)
	}
	if !s.ExpiresAt.Equal(testNow.Add(testLifetime)) || s.ManifestSHA256 == "" {
		t.Errorf("secret %v manifest %q", s, s.ManifestSHA256)
	}
	st := h.m.Status()
	if !st.Ready || st.Reason != "" || st.SecretID != ShortID(s.ID) || st.Attestation.Verdict != attest.VerdictAccepted ||
		!st.LastAttestedAt.Equal(testNow) || !st.NextAttestationAt.Equal(testNow.Add(testReattest)) || st.Rotations != 0 {
		t.Errorf("status %+v", st)
	}
	if len(changes) != 2 || changes[0].Ready || !changes[1].Ready {
		t.Errorf("OnChange got %d calls", len(changes))
	}
	if h.api.attests.Load() != 1 || h.api.exchanges.Load() != 1 {
		t.Errorf("attests %d exchanges %d", h.api.attests.Load(), h.api.exchanges.Load())
	}
}

func TestManagerRotatesBeforeExpiry(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	first := h.mustCurrent(t)

	h.clock.Advance(testLifetime - testRotate - time.Second)
	if wait := h.m.step(ctx); wait != time.Second || h.api.exchanges.Load() != 1 {
		t.Fatalf("rotated early: wait %s, %d exchanges", wait, h.api.exchanges.Load())
	}
	h.clock.Advance(time.Second)
	h.m.step(ctx)
	second := h.mustCurrent(t)
	if second.ID == first.ID || second.Key == first.Key {
		t.Fatal("rotation kept the old secret")
	}
	if !second.ExpiresAt.After(first.ExpiresAt) || h.m.Status().Rotations != 1 {
		t.Fatalf("rotation bookkeeping: %v, %+v", second, h.m.Status())
	}
	if h.api.attests.Load() != 1 {
		t.Errorf("rotation re-attested (%d) before the interval", h.api.attests.Load())
	}

	// Periodic re-attestation, with the same trust state, keeps the secret.
	h.clock.Advance(testReattest - (testLifetime - testRotate))
	h.m.step(ctx)
	if h.api.attests.Load() != 2 || h.mustCurrent(t).ID != second.ID {
		t.Fatalf("re-attestation: %d attests", h.api.attests.Load())
	}
}

func TestManagerSecretExpiresWhileRotationFails(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	h.api.failSecret.Store(http.StatusServiceUnavailable)
	h.clock.Advance(testLifetime - testRotate)
	h.m.step(ctx)
	h.mustCurrent(t) // still valid: a failed rotation does not revoke

	h.clock.Advance(testRotate)
	wantNotReady(t, h.m, "expired")
	wantNotReady(t, h.m, "HTTP 503")
}

func TestManagerBadEvidenceRevokes(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	old := h.mustCurrent(t)

	h.api.badEvidence.Store(true)
	h.m.Reattest()
	wait := h.m.step(ctx)
	err := wantNotReady(t, h.m, "attestation rejected: measurement")
	if !errors.Is(err, attest.ErrMeasurement) {
		t.Errorf("reason is not a measurement error: %v", err)
	}
	st := h.m.Status()
	if st.AttestationFailures != 1 || st.Attestation.Verdict != attest.VerdictRejected || st.SecretID != "" || st.LastError == "" {
		t.Errorf("status after rejection %+v", st)
	}
	if wait <= 0 || wait > time.Second {
		t.Errorf("backoff %s", wait)
	}
	// Still bad: the retry keeps it revoked, and Invalidate cannot bypass.
	h.clock.Advance(wait)
	h.m.step(ctx)
	wantNotReady(t, h.m, "MRTD")
	if _, err := h.m.Invalidate(ctx, old.ID); !errors.Is(err, attest.ErrMeasurement) {
		t.Errorf("Invalidate with bad evidence: %v", err)
	}

	h.api.badEvidence.Store(false)
	h.clock.Advance(time.Minute)
	h.m.step(ctx)
	if s := h.mustCurrent(t); s.ID == old.ID {
		t.Fatal("recovered with the revoked secret")
	}
	if st := h.m.Status(); st.LastError != "" || !st.Ready {
		t.Errorf("status after recovery %+v", st)
	}
}

func TestManagerExchangeFailureBacksOff(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Backoff.Jitter = -1 })
	ctx := context.Background()
	h.api.failSecret.Store(http.StatusBadGateway)

	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if got := h.m.step(ctx); got != want {
			t.Fatalf("failure %d: backoff %s, want %s", i+1, got, want)
		}
		// Before the deadline nothing is attempted.
		calls := h.api.exchanges.Load()
		if got := h.m.step(ctx); got != want || h.api.exchanges.Load() != calls {
			t.Fatalf("retried during backoff")
		}
		h.clock.Advance(want)
	}
	wantNotReady(t, h.m, "secret exchange failed")
	if st := h.m.Status(); st.ExchangeFailures != 5 {
		t.Errorf("exchange failures %d", st.ExchangeFailures)
	}
	// Each retry re-attests first (the mesh CA may have rotated).
	if h.api.attests.Load() != 5 {
		t.Errorf("attests %d", h.api.attests.Load())
	}

	h.api.failSecret.Store(0)
	h.m.step(ctx)
	h.mustCurrent(t)
	if h.m.step(ctx) != testLifetime-testRotate {
		t.Error("backoff not reset after success")
	}
}

func TestBackoffJitter(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5}
	if d := b.Delay(1, 0.999); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("jittered %s", d)
	}
	if d := b.Delay(100, 0); d != time.Minute {
		t.Errorf("capped %s", d)
	}
}

func TestInvalidateDeduplicates(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	old := h.mustCurrent(t)
	h.api.gate = make(chan struct{})

	const callers = 20
	var wg sync.WaitGroup
	results := make([]Secret, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { results[i], errs[i] = h.m.Invalidate(ctx, old.ID) })
	}
	// Hold the one exchange until every caller waits on it.
	for {
		h.m.flightsMu.Lock()
		f := h.m.flights[old.ID]
		n := 0
		if f != nil {
			n = f.refs
		}
		h.m.flightsMu.Unlock()
		if n == callers {
			break
		}
		runtime.Gosched()
	}
	close(h.api.gate)
	wg.Wait()

	if n := h.api.exchanges.Load(); n != 2 {
		t.Fatalf("%d exchanges for %d callers, want 1 (+1 initial)", n-1, callers)
	}
	cur := h.mustCurrent(t)
	for i := range callers {
		if errs[i] != nil || results[i].ID != cur.ID || results[i].Key != cur.Key {
			t.Fatalf("caller %d: %v %v", i, results[i], errs[i])
		}
	}
	if cur.ID == old.ID {
		t.Fatal("not replaced")
	}
	// A late caller with the stale ID gets the new secret, no exchange.
	if s, err := h.m.Invalidate(ctx, old.ID); err != nil || s.ID != cur.ID || h.api.exchanges.Load() != 2 {
		t.Fatalf("late caller: %v %v", s, err)
	}
	if h.api.attests.Load() != 1 {
		t.Errorf("re-attested although the last exchange succeeded")
	}
}

func TestInvalidateFailureWithdrawsSecret(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.m.step(ctx)
	old := h.mustCurrent(t)
	h.api.failSecret.Store(http.StatusInternalServerError)
	if _, err := h.m.Invalidate(ctx, old.ID); !IsRetryable(err) {
		t.Fatalf("Invalidate: %v", err)
	}
	wantNotReady(t, h.m, "backend lost the inference secret")

	// The next Invalidate re-attests first because the exchange failed
	// (once the re-exchange backoff has passed).
	h.api.failSecret.Store(0)
	h.clock.Advance(8 * time.Second)
	s, err := h.m.Invalidate(ctx, old.ID)
	if err != nil || s.ID == old.ID || h.api.attests.Load() != 2 {
		t.Fatalf("second Invalidate: %v %v, %d attests", s, err, h.api.attests.Load())
	}
	h.mustCurrent(t)
}

func TestInvalidateCallerCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.m.step(context.Background())
	old := h.mustCurrent(t)
	h.api.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.m.Invalidate(ctx, old.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(h.api.gate)
}

func TestRunStopsOnCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ready := make(chan Status, 16)
	h := newHarness(t, func(o *Options) {
		o.OnChange = func(s Status) {
			if s.Ready {
				ready <- s
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	<-ready
	h.mustCurrent(t)
	if err := h.m.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}

	// Reattest wakes the sleeping loop.
	h.m.Reattest()
	for h.api.attests.Load() < 2 {
		<-ready // each attestation of a ready manager reports a change
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}

	h.api.Close()
	h.api.Server.Client().CloseIdleConnections()
	for range 200 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond) // let exiting goroutines finish; not a correctness wait
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
}

func TestNewManagerValidates(t *testing.T) {
	api := newFakeAPI(t)
	c := api.client(t)
	v := verifiertest.New(t, api.b, api.b.TDXManifest, testNow)
	for _, o := range []Options{
		{Exchanger: c, Verifier: v},
		{Attester: c, Exchanger: c, Verifier: v, SecretLifetime: 2 * time.Hour},
		{Attester: c, Exchanger: c, Verifier: v, SecretLifetime: time.Minute, RotateBefore: time.Minute},
	} {
		if _, err := NewManager(o); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
}

func TestManagerTrustChangeForcesExchange(t *testing.T) {
	h := newHarness(t, nil)
	h.m.step(context.Background())
	if h.m.needExchange(h.clock.Now()) {
		t.Fatal("fresh secret needs an exchange")
	}
	// A re-attestation that shows another mesh CA (or manifest) makes the
	// secret from the old trust state unusable for rotation purposes.
	other := *h.m.st.meshCA
	other.Raw = append([]byte(nil), other.Raw...)
	other.Raw[len(other.Raw)-1] ^= 1
	h.m.st.meshCA = &other
	if !h.m.needExchange(h.clock.Now()) {
		t.Error("mesh CA change does not force an exchange")
	}
	h.m.st.meshCA = h.m.st.secretMeshCA
	h.m.st.result = &attest.Result{ManifestSHA256: "00"}
	if !h.m.needExchange(h.clock.Now()) {
		t.Error("manifest change does not force an exchange")
	}
}

// BenchmarkCurrent is the request path: one atomic load and a clock read.
func BenchmarkCurrent(b *testing.B) {
	api := newFakeAPI(b)
	c := api.client(b)
	m, err := NewManager(Options{Attester: c, Exchanger: c, Verifier: verifiertest.New(b, api.b, api.b.TDXManifest, testNow), Now: func() time.Time { return testNow }})
	if err != nil {
		b.Fatal(err)
	}
	m.step(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Current(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkExchangeLoopback is one full exchange through the API client
// and the Responder over loopback HTTP, including verification.
func BenchmarkExchangeLoopback(b *testing.B) {
	api := newFakeAPI(b)
	c := api.client(b)
	for b.Loop() {
		if _, err := Exchange(context.Background(), c, api.b.Coordinator.MeshCACert, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttestAndExchange is a cold start: attestation (TDX quote
// signing on the fake side, full verification on ours) plus an exchange.
func BenchmarkAttestAndExchange(b *testing.B) {
	api := newFakeAPI(b)
	c := api.client(b)
	v := verifiertest.New(b, api.b, api.b.TDXManifest, testNow)
	for b.Loop() {
		m, err := NewManager(Options{Attester: c, Exchanger: c, Verifier: v, Now: func() time.Time { return testNow }})
		if err != nil {
			b.Fatal(err)
		}
		m.step(context.Background())
		if _, err := m.Current(); err != nil {
			b.Fatal(err)
		}
	}
}
