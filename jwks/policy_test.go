package jwks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// fetchOnce runs one discovery + JWKS round against g.
func fetchOnce(t *testing.T, g *fakeGitLab, edit func(*Options)) (*fetchResult, error) {
	t.Helper()
	h := newHarness(t, g, edit)
	return h.set.fetch(context.Background())
}

func TestFetchPolicy(t *testing.T) {
	k0 := rsaKey(t, 0)
	other := newFakeGitLab(t) // another host (same IP, other port)
	other.setKeys(t, rsaKey(t, 1))

	for _, tc := range []struct {
		name    string
		setup   func(g *fakeGitLab) func(*Options)
		wantErr string // "" means success
	}{
		{"ok", func(g *fakeGitLab) func(*Options) { return nil }, ""},
		{"cross-host jwks_uri refused", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI(other.srv.URL + "/oauth/discovery/keys")
			return nil
		}, "not on the issuer's host"},
		{"cross-host jwks_uri with AllowCrossHost", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI(other.srv.URL + "/oauth/discovery/keys")
			return func(o *Options) { o.AllowCrossHost = true }
		}, ""},
		{"other hostname refused", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI(strings.Replace(g.srv.URL, "127.0.0.1", "evil.example.com", 1) + "/oauth/discovery/keys")
			return nil
		}, "not on the issuer's host"},
		{"http jwks_uri refused", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI(strings.Replace(g.srv.URL, "https:", "http:", 1) + "/oauth/discovery/keys")
			return nil
		}, "is not https"},
		{"http jwks_uri refused even cross-host", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI("http://gitlab.example.com/oauth/discovery/keys")
			return func(o *Options) { o.AllowCrossHost = true }
		}, "is not https"},
		{"relative jwks_uri resolved against issuer", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI("/oauth/discovery/keys")
			return nil
		}, ""},
		{"cross-host redirect refused", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI(g.srv.URL + "/redirect")
			g.setRedirect(other.srv.URL + "/oauth/discovery/keys")
			return nil
		}, "refusing redirect"},
		{"same-host redirect followed", func(g *fakeGitLab) func(*Options) {
			g.setJWKSURI(g.srv.URL + "/redirect")
			g.setRedirect("/oauth/discovery/keys")
			return nil
		}, ""},
		{"private key refuses the whole set", func(g *fakeGitLab) func(*Options) {
			g.setRaw([]byte(`{"keys":[` + pubJWK(t, k0, "good") + `,` + privJWK(t, rsaKey(t, 1)) + `]}`))
			return nil
		}, "private key material"},
		{"small RSA key refused", func(g *fakeGitLab) func(*Options) {
			g.setRaw([]byte(`{"keys":[` + smallRSAJWK(t) + `]}`))
			return nil
		}, "no usable keys"},
		{"oversized body (chunked)", func(g *fakeGitLab) func(*Options) {
			g.setRaw(append([]byte(`{"keys":[],"pad":"`), bytes.Repeat([]byte("x"), DefaultMaxBody)...))
			return nil
		}, "exceeds limit"},
		{"oversized body (Content-Length)", func(g *fakeGitLab) func(*Options) {
			return func(o *Options) { o.MaxBody = 100 }
		}, "exceeds limit"},
		{"invalid JSON", func(g *fakeGitLab) func(*Options) {
			g.setRaw([]byte(`{"keys":[`))
			return nil
		}, "invalid JSON"},
		{"error status", func(g *fakeGitLab) func(*Options) {
			g.setMode("error")
			return nil
		}, "status 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGitLab(t)
			g.setKeys(t, k0)
			res, err := fetchOnce(t, g, tc.setup(g))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(res.snap.all) != 1 {
					t.Fatalf("%d keys", len(res.snap.all))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
			}
			t.Log(err)
		})
	}
}

func TestIssuerPathPrefixKept(t *testing.T) {
	g := newFakeGitLab(t)
	g.setKeys(t, rsaKey(t, 0))
	h := newHarness(t, g, func(o *Options) { o.IssuerURL = g.srv.URL + "/gitlab" })
	if _, err := h.set.fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("path prefix must be kept: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, o := range []Options{
		{},
		{IssuerURL: "http://gitlab.example.com"},
		{IssuerURL: "https://user:pw@gitlab.example.com"},
		{IssuerURL: "gitlab.example.com"},
		{IssuerURL: "https://gitlab.example.com", MinRefresh: 2 * DefaultMaxRefresh},
		{IssuerURL: "https://gitlab.example.com", Backoff: Backoff{Initial: time.Hour, Max: time.Minute}},
		{IssuerURL: "https://gitlab.example.com", Backoff: Backoff{Jitter: 2}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	s, err := New(Options{IssuerURL: "https://gitlab.example.com/", HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.issuer.JoinPath(discoveryPath).String(); got != "https://gitlab.example.com/.well-known/openid-configuration" {
		t.Fatal(got)
	}
	if st := s.Status(); st.Ready || st.Fetches != 0 {
		t.Fatalf("New did I/O? %+v", st)
	}
	_, err = s.Key(context.Background(), "x")
	if !errors.Is(err, ErrNotReady) {
		t.Fatal(err)
	}
}

// TestLogsNoKeyMaterial: fetch outcomes are logged with the issuer host and
// key count, never with key material, even when a private key is refused.
func TestLogsNoKeyMaterial(t *testing.T) {
	g := newFakeGitLab(t)
	k0, k1 := rsaKey(t, 0), rsaKey(t, 1)
	var buf testutil.LogBuffer
	h := newHarness(t, g, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	g.setRaw([]byte(`{"keys":[` + pubJWK(t, k0, "a") + `,` + smallRSAJWK(t) + `]}`))
	h.start(t)
	h.clk.NextWait(t)
	g.setRaw([]byte(`{"keys":[` + privJWK(t, k1) + `]}`))
	h.clk.Advance(DefaultRefresh * 24)
	h.clk.NextWait(t)

	out := buf.String()
	t.Log(out)
	host := strings.TrimPrefix(g.srv.URL, "https://")
	for _, want := range []string{`"issuer_host":"` + host + `"`, `"key_count":1`, `rsa modulus too small`, `private key material`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, secret := range []*big.Int{k0.N, k1.N, k1.D, k1.Primes[0]} {
		if strings.Contains(out, b64(secret.Bytes())[:16]) {
			t.Error("log contains key material")
		}
	}
}
