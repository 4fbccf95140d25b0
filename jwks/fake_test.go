package jwks

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// safety bounds how long a test waits for an event before failing. It
// guards against hangs only; no assertion depends on elapsed time.
const safety = 20 * time.Second

// fakeGitLab serves OIDC discovery and a JWKS over TLS on 127.0.0.1.
type fakeGitLab struct {
	srv *httptest.Server

	mu           sync.Mutex
	mode         string // "", "down", "error", "slow"
	jwks         []byte
	cacheControl string
	jwksURI      string // overrides the discovery answer if set
	slowEntered  chan struct{}
	redirectTo   string
	release      chan struct{} // closing it ends stalled requests

	discoveryHits, jwksHits atomic.Int64
}

func newFakeGitLab(t *testing.T) *fakeGitLab {
	t.Helper()
	g := &fakeGitLab{cacheControl: "public, max-age=86400", release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		g.discoveryHits.Add(1)
		if g.fail(w, r) {
			return
		}
		g.mu.Lock()
		uri := g.jwksURI
		g.mu.Unlock()
		if uri == "" {
			uri = g.srv.URL + "/oauth/discovery/keys"
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": g.srv.URL, "jwks_uri": uri})
	})
	mux.HandleFunc("GET /oauth/discovery/keys", func(w http.ResponseWriter, r *http.Request) {
		g.jwksHits.Add(1)
		if g.fail(w, r) {
			return
		}
		g.mu.Lock()
		body, cc := g.jwks, g.cacheControl
		g.mu.Unlock()
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /redirect", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		to := g.redirectTo
		g.mu.Unlock()
		http.Redirect(w, r, to, http.StatusFound)
	})
	g.srv = httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.srv.Listener = ln
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	return g
}

// fail implements the failure modes; it reports whether it answered.
func (g *fakeGitLab) fail(w http.ResponseWriter, r *http.Request) bool {
	g.mu.Lock()
	mode, entered, release := g.mode, g.slowEntered, g.release
	g.mu.Unlock()
	switch mode {
	case "down": // drop the connection, as an unreachable host would
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
		return true
	case "error":
		http.Error(w, "GitLab is not available", http.StatusServiceUnavailable)
		return true
	case "slow": // stall until the client gives up or the test releases it
		if entered != nil {
			select {
			case entered <- struct{}{}:
			default:
			}
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
		// Never an answer: a stalled GitLab sends nothing, so the client
		// must see its own timeout (returning here would send an empty
		// 200 if the request's context ended for another reason first).
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
		return true
	}
	return false
}

func (g *fakeGitLab) setMode(m string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mode = m
}

func (g *fakeGitLab) setKeys(t *testing.T, keys ...*rsa.PrivateKey) {
	t.Helper()
	var pubs []crypto.PublicKey
	for _, k := range keys {
		pubs = append(pubs, &k.PublicKey)
	}
	body, err := Publish(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	g.setRaw(body)
}

func (g *fakeGitLab) setRaw(body []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.jwks = body
}

func (g *fakeGitLab) setCacheControl(cc string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cacheControl = cc
}

func (g *fakeGitLab) setRedirect(u string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.redirectTo = u
}

func (g *fakeGitLab) setJWKSURI(u string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.jwksURI = u
}

// testKeys are generated once; RSA generation is slow under -race.
var (
	testKeysOnce sync.Once
	testKeys     []*rsa.PrivateKey
)

func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	testKeysOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[i]
}

func kidOf(t testing.TB, k *rsa.PrivateKey) string {
	t.Helper()
	kid, err := Thumbprint(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

// harness wires a Set to a fake GitLab and a fake clock.
type harness struct {
	g      *fakeGitLab
	clk    *testutil.Clock
	set    *Set
	cancel func()
	done   chan error
}

func newHarness(t *testing.T, g *fakeGitLab, edit func(*Options)) *harness {
	t.Helper()
	clk := testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	o := Options{
		IssuerURL:  g.srv.URL,
		HTTPClient: g.srv.Client(),
		Now:        clk.Now,
		After:      clk.After,
		Rand:       func() float64 { return 0 }, // no jitter
	}
	if edit != nil {
		edit(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{g: g, clk: clk, set: s}
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.set.Run(ctx) }()
	t.Cleanup(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(safety):
			t.Error("Run did not return after cancel")
		}
	})
}

func (h *harness) String() string { return fmt.Sprintf("%+v", h.set.Status()) }
