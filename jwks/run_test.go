package jwks

import (
	"context"
	"crypto/rsa"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIssuerDownAtStart: GitLab unreachable at start → ErrNotReady with the
// reason, Run retries on the backoff schedule, and becomes ready when GitLab
// comes up, without a restart.
func TestIssuerDownAtStart(t *testing.T) {
	g := newFakeGitLab(t)
	k0 := rsaKey(t, 0)
	g.setKeys(t, k0)
	g.setMode("down")
	h := newHarness(t, g, func(o *Options) { o.Backoff = Backoff{Initial: time.Second, Max: 10 * time.Second} })

	_, err := h.set.Key(context.Background(), kidOf(t, k0))
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "first fetch has not completed") {
		t.Fatalf("before Run: got %v, want ErrNotReady", err)
	}
	h.start(t) // Run is in its own goroutine; nothing here blocks on GitLab.

	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		if got := h.clk.NextWait(t); got != w*time.Second {
			t.Fatalf("retry %d: wait %v, want %v", i+1, got, w*time.Second)
		}
		_, err := h.set.Key(context.Background(), kidOf(t, k0))
		if !errors.Is(err, ErrNotReady) || !strings.HasPrefix(err.Error(), "waiting for GitLab keys: OIDC discovery:") {
			t.Fatalf("retry %d: got %v, want ErrNotReady with the reason", i+1, err)
		}
		st := h.set.Status()
		if h.set.Ready() {
			t.Fatalf("retry %d: Ready() before any key was loaded", i+1)
		}
		if st.Ready || st.Failures != uint64(i+1) || st.ConsecutiveFailures != i+1 || st.LastError == "" ||
			!st.NextFetch.Equal(h.clk.Now().Add(w*time.Second)) {
			t.Fatalf("retry %d: status %+v", i+1, st)
		}
		if h.set.All() != nil || h.set.Keys() != nil {
			t.Fatal("keys before ready")
		}
		h.clk.Advance(w * time.Second)
	}
	if got := h.clk.NextWait(t); got != 10*time.Second {
		t.Fatalf("capped wait %v", got)
	}

	g.setMode("")
	h.clk.Advance(10 * time.Second)
	if got := h.clk.NextWait(t); got != 24*time.Hour {
		t.Fatalf("after recovery: wait %v, want 24h (max-age=86400)", got)
	}
	pub, err := h.set.Key(context.Background(), kidOf(t, k0))
	if err != nil || !pub.(*rsa.PublicKey).Equal(&k0.PublicKey) {
		t.Fatalf("after recovery: %v", err)
	}
	if !h.set.Ready() {
		t.Fatal("Ready() false after recovery")
	}
	st := h.set.Status()
	if !st.Ready || st.KeyCount != 1 || st.LastError != "" || st.ConsecutiveFailures != 0 ||
		st.Fetches != uint64(len(want)+2) || st.Failures != uint64(len(want)+1) || !st.LastSuccess.Equal(h.clk.Now()) {
		t.Fatalf("status %+v", st)
	}
}

func TestBackoffJitter(t *testing.T) {
	s, err := New(Options{IssuerURL: "https://gitlab.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    float64
		n    int
		want time.Duration
	}{
		{0, 1, time.Second},
		{0.5, 1, 900 * time.Millisecond},
		{0.75, 2, 1700 * time.Millisecond},
		{0.5, 30, 4*time.Minute + 30*time.Second},
		{0.5, 1000, 4*time.Minute + 30*time.Second},
		{0, 1000, 5 * time.Minute},
	} {
		s.o.Rand = func() float64 { return tc.r }
		if got := s.backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) with r=%v = %v, want %v", tc.n, tc.r, got, tc.want)
		}
	}
}

func TestRefreshHonoursCacheControl(t *testing.T) {
	for _, tc := range []struct {
		cc   string
		want time.Duration
	}{
		{"public, max-age=86400", 24 * time.Hour},
		{"max-age=600", 10 * time.Minute},
		{"max-age=60", 5 * time.Minute},                  // below MinRefresh
		{"public, max-age=31536000", 24 * time.Hour},     // above MaxRefresh
		{"no-store", time.Hour},                          // default
		{"max-age=600, no-cache", time.Hour},             // default
		{"", time.Hour},                                  // no header
		{"max-age=abc", time.Hour},                       // unparsable
		{`private, max-age="900"`, 15 * time.Minute},     // quoted
		{"max-age=99999999999999999999", 24 * time.Hour}, // overflow
	} {
		t.Run(tc.cc, func(t *testing.T) {
			g := newFakeGitLab(t)
			g.setKeys(t, rsaKey(t, 0))
			g.setCacheControl(tc.cc)
			h := newHarness(t, g, nil)
			h.start(t)
			if got := h.clk.NextWait(t); got != tc.want {
				t.Fatalf("first refresh in %v, want %v", got, tc.want)
			}
			h.clk.Advance(tc.want)
			if got := h.clk.NextWait(t); got != tc.want {
				t.Fatalf("second refresh in %v, want %v", got, tc.want)
			}
			if n := g.jwksHits.Load(); n != 2 {
				t.Fatalf("%d JWKS fetches, want 2", n)
			}
		})
	}
}

// TestRefreshFailureKeepsLastGood covers down, erroring and stalled GitLab
// after a successful fetch.
func TestRefreshFailureKeepsLastGood(t *testing.T) {
	for _, mode := range []string{"down", "error", "slow"} {
		t.Run(mode, func(t *testing.T) {
			g := newFakeGitLab(t)
			k0 := rsaKey(t, 0)
			g.setKeys(t, k0)
			g.setCacheControl("max-age=600")
			entered := make(chan struct{}, 1)
			g.slowEntered = entered
			h := newHarness(t, g, nil)
			h.start(t)
			if got := h.clk.NextWait(t); got != 10*time.Minute {
				t.Fatalf("wait %v", got)
			}
			g.setMode(mode)
			h.clk.Advance(10 * time.Minute)
			if mode == "slow" {
				select {
				case <-entered:
				case <-time.After(safety):
					t.Fatal("fetch never reached the server")
				}
				// A stalled fetch does not block lookups of known kids.
				if _, err := h.set.Key(context.Background(), kidOf(t, k0)); err != nil {
					t.Fatalf("Key during stalled fetch: %v", err)
				}
				close(g.release)
			}
			if got := h.clk.NextWait(t); got != time.Second {
				t.Fatalf("retry in %v, want 1s backoff", got)
			}
			pub, err := h.set.Key(context.Background(), kidOf(t, k0))
			if err != nil || !pub.(*rsa.PublicKey).Equal(&k0.PublicKey) {
				t.Fatalf("Key after failed refresh: %v", err)
			}
			if len(h.set.All()) != 1 {
				t.Fatal("All lost the last good key")
			}
			st := h.set.Status()
			if !st.Ready || st.KeyCount != 1 || st.LastError == "" || st.Failures != 1 || st.ConsecutiveFailures != 1 {
				t.Fatalf("status %+v", st)
			}
			t.Logf("LastError: %s", st.LastError)
		})
	}
}

// TestFetchTimeout: a GitLab that accepts connections but never answers
// cannot stall Run; the attempt fails after FetchTimeout and is retried.
func TestFetchTimeout(t *testing.T) {
	g := newFakeGitLab(t)
	g.setKeys(t, rsaKey(t, 0))
	g.setMode("slow")
	h := newHarness(t, g, func(o *Options) { o.FetchTimeout = 50 * time.Millisecond })
	h.start(t)
	if got := h.clk.NextWait(t); got != time.Second {
		t.Fatalf("retry in %v, want 1s", got)
	}
	st := h.set.Status()
	if st.Ready || !strings.Contains(st.LastError, "timed out") {
		t.Fatalf("status %+v", st)
	}
	_, err := h.set.Key(context.Background(), "any")
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Key: %v", err)
	}
}

// TestRotationViaUnknownKid: a new kid triggers one refetch and succeeds; a
// flood of lookups causes at most one fetch per UnknownKidInterval.
func TestRotationViaUnknownKid(t *testing.T) {
	g := newFakeGitLab(t)
	k0, k1, k2 := rsaKey(t, 0), rsaKey(t, 1), rsaKey(t, 2)
	g.setKeys(t, k0)
	var changes []Status
	var mu sync.Mutex
	h := newHarness(t, g, func(o *Options) {
		o.OnChange = func(s Status) { mu.Lock(); changes = append(changes, s); mu.Unlock() }
	})
	h.start(t)
	h.clk.NextWait(t)
	ctx := context.Background()

	// GitLab rotates: k1 appears. The first request with it succeeds.
	g.setKeys(t, k0, k1)
	pub, err := h.set.Key(ctx, kidOf(t, k1))
	if err != nil || !pub.(*rsa.PublicKey).Equal(&k1.PublicKey) {
		t.Fatalf("rotated kid: %v", err)
	}
	h.clk.NextWait(t)
	if n := g.jwksHits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// Within the interval an unknown kid fails at once, without a fetch.
	h.clk.Advance(DefaultUnknownKidInterval - time.Second)
	if _, err := h.set.Key(ctx, "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("rate-limited lookup: %v", err)
	}
	if n := g.jwksHits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// After the interval: 100 concurrent lookups for two unknown kids (one
	// of which GitLab now has) share a single fetch.
	g.setKeys(t, k0, k1, k2)
	h.clk.Advance(time.Second)
	var wg sync.WaitGroup
	errs := make([]error, 100)
	for i := range errs {
		wg.Go(func() {
			kid := "attacker-" + string(rune('a'+i%26))
			if i%2 == 0 {
				kid = kidOf(t, k2)
			}
			_, errs[i] = h.set.Key(ctx, kid)
		})
	}
	wg.Wait()
	h.clk.NextWait(t)
	if n := g.jwksHits.Load(); n != 3 {
		t.Fatalf("flood caused %d fetches in total, want 3", n)
	}
	for i, err := range errs {
		if i%2 == 1 && !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	// Lookups that arrived after the shared fetch ended were rate-limited,
	// but the key is now known to everyone.
	if _, err := h.set.Key(ctx, kidOf(t, k2)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 3 || changes[2].KeyCount != 3 {
		t.Fatalf("OnChange calls: %+v", changes)
	}
}

// TestUnknownKidWaitHonoursContext: a caller stops waiting for a stalled
// refetch when its context ends; others keep sharing the same fetch.
func TestUnknownKidWaitHonoursContext(t *testing.T) {
	g := newFakeGitLab(t)
	g.setKeys(t, rsaKey(t, 0))
	entered := make(chan struct{}, 1)
	g.slowEntered = entered
	h := newHarness(t, g, func(o *Options) { o.FetchTimeout = time.Hour })
	h.start(t)
	h.clk.NextWait(t)
	g.setMode("slow")
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := h.set.Key(ctx, "new"); res <- err }()
	<-entered
	cancel()
	if err := <-res; !errors.Is(err, ErrUnknownKey) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if n := g.discoveryHits.Load(); n != 2 {
		t.Fatalf("%d fetches", n)
	}
}

func TestKeyWithoutRun(t *testing.T) {
	g := newFakeGitLab(t)
	g.setKeys(t, rsaKey(t, 0))
	h := newHarness(t, g, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.set.Run(ctx) }()
	h.clk.NextWait(t)
	if err := h.set.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Stopped: known keys still work, unknown kids fail without waiting.
	if _, err := h.set.Key(context.Background(), kidOf(t, rsaKey(t, 0))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.set.Key(context.Background(), "other"); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
	if _, err := h.set.Key(context.Background(), ""); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
}
