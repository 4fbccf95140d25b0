package gitlabtest

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/jwks"
)

const (
	goldenURL      = "https://gitlab.example.com"
	goldenInstance = "5f1c2a4e-8b7d-4c3e-9a10-2b3c4d5e6f70"
	goldenJTI      = "0b8c7c4e-0d1f-4f57-9a83-6f1a2b3c4d5e"
)

var goldenNow = time.Unix(1_760_000_000, 0)

// testKey is a fixed 2048-bit RSA key for tests only (testdata), so tests
// do not pay for key generation under -race.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	b, err := os.ReadFile(filepath.Join("testdata", "demo-issuer-key.pem"))
	if err != nil {
		panic(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		panic("testdata key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		panic(err)
	}
	return k.(*rsa.PrivateKey)
})

func newIssuer(t *testing.T, edit func(*Options)) *Issuer {
	t.Helper()
	o := Options{Key: testKey()}
	if edit != nil {
		edit(&o)
	}
	i, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// serve starts i's Handler on a loopback TLS server and sets its URL.
func serve(t *testing.T, i *Issuer) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(i.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.StartTLS()
	t.Cleanup(srv.Close)
	i.SetURL(srv.URL)
	return srv
}

// runSet starts a jwks.Set against srv (trusting its certificate).
func runSet(t *testing.T, srv *httptest.Server) *jwks.Set {
	t.Helper()
	s, err := jwks.New(jwks.Options{
		IssuerURL:  srv.URL,
		HTTPClient: srv.Client(),
		Backoff:    jwks.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readySet adapts a jwks.Set to auth.ReadyReporter: *jwks.Set has
// Status().Ready but no Ready method, so without this a kid-less token
// before the first fetch would get 401 instead of 503.
type readySet struct{ *jwks.Set }

func (r readySet) Ready() bool { return r.Status().Ready }

func newValidator(t *testing.T, issuerURL string, keys *jwks.Set) *auth.Validator {
	t.Helper()
	v, err := auth.NewValidator(auth.Config{
		Audience:       DefaultAudience,
		Issuers:        []auth.Issuer{{Name: issuerURL, Keys: readySet{keys}}},
		NotReadyErrors: []error{jwks.ErrNotReady},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mint(t *testing.T, i *Issuer, c TokenOptions) (string, http.Header) {
	t.Helper()
	tok, err := i.Token(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok, i.Headers(tok, c)
}

func validate(v *auth.Validator, h http.Header) (*auth.Claims, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return v.Validate(ctx, auth.RequestFromHeaders(h.Get))
}

// decodeSegment decodes the n-th (0 header, 1 payload) segment of a JWT.
func decodeSegment(t *testing.T, tok string, n int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[n])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func authStatus(err error) (int, string) {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		return 0, ""
	}
	return ae.Status, ae.Message
}

// TestGoldenToken: header and payload of a token minted with a fixed key,
// clock, instance and jti equal testdata/token.golden.json.
func TestGoldenToken(t *testing.T) {
	i := newIssuer(t, func(o *Options) {
		o.InstanceID = goldenInstance
		o.Now = func() time.Time { return goldenNow }
	})
	i.SetURL(goldenURL + "/")
	tok, err := i.Token(TokenOptions{JTI: goldenJTI})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{"header": decodeSegment(t, tok, 0), "payload": decodeSegment(t, tok, 1)}
	gotJSON, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	gotJSON = append(gotJSON, '\n')
	path := filepath.Join("testdata", "token.golden.json")
	testutil.Golden(t, path, gotJSON)
	// The kid in the golden file is the RFC 7638 thumbprint of the key.
	kid, err := jwks.Thumbprint(&testKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got["header"].(map[string]any)["kid"] != kid || i.KeyID() != kid {
		t.Fatalf("kid %v, want thumbprint %s", got["header"], kid)
	}
	// And the token verifies with the public key (RS256).
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return &testKey().PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return goldenNow })); err != nil {
		t.Fatal(err)
	}
}

func TestTokenClaims(t *testing.T) {
	now := goldenNow
	i := newIssuer(t, func(o *Options) { o.Now = func() time.Time { return now } })
	if _, err := i.Token(TokenOptions{}); err == nil || !strings.Contains(err.Error(), "SetURL") {
		t.Fatalf("token without URL: %v", err)
	}
	i.SetURL(goldenURL)
	tok, err := i.Token(TokenOptions{
		Scopes:      []string{"duo_chat"},
		TTL:         10 * time.Minute,
		Subject:     "custom-sub",
		WithoutKid:  true,
		ExtraClaims: map[string]any{"skip_usage_cutoff": nil, "gitlab_instance_uid": "uid-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, p := decodeSegment(t, tok, 0), decodeSegment(t, tok, 1)
	if _, ok := h["kid"]; ok || h["alg"] != "RS256" || h["typ"] != "JWT" {
		t.Fatalf("header %v", h)
	}
	iat := now.Unix()
	want := map[string]any{
		"iss": goldenURL, "sub": "custom-sub", "aud": []any{DefaultAudience},
		"iat": json.Number(itoa(iat)), "nbf": json.Number(itoa(iat - 5)), "exp": json.Number(itoa(iat + 600)),
		"gitlab_realm": DefaultRealm, "scopes": []any{"duo_chat"}, "gitlab_instance_uid": "uid-1",
	}
	jti, _ := p["jti"].(string)
	delete(p, "jti")
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("payload %v\nwant    %v", p, want)
	}
	if len(jti) != 36 || jti[14] != '4' {
		t.Fatalf("jti %q is not a UUIDv4", jti)
	}
	// Defaults: sub is the instance id (a UUIDv4), scopes the Duo set.
	p = decodeSegment(t, must(t)(i.Token(TokenOptions{})), 1)
	if p["sub"] != i.InstanceID() || len(i.InstanceID()) != 36 || !reflect.DeepEqual(p["scopes"], toAny(DefaultScopes)) {
		t.Fatalf("defaults: %v", p)
	}
	// An empty non-nil scope list is an empty array.
	p = decodeSegment(t, must(t)(i.Token(TokenOptions{Scopes: []string{}})), 1)
	if s, ok := p["scopes"].([]any); !ok || len(s) != 0 {
		t.Fatalf("empty scopes: %v", p["scopes"])
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func must(t *testing.T) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestNewAndSetURLErrors(t *testing.T) {
	if _, err := New(Options{KeyBits: 1024}); err == nil {
		t.Fatal("1024-bit keys accepted")
	}
	if _, err := New(Options{Key: testKey(), URL: "gitlab.example.com"}); err == nil {
		t.Fatal("invalid Options.URL accepted")
	}
	if i, err := New(Options{Key: testKey(), URL: goldenURL + "/"}); err != nil || i.URL() != goldenURL {
		t.Fatalf("Options.URL: %v", err)
	}
	i := newIssuer(t, nil)
	for _, u := range []string{"", "gitlab.example.com", "ftp://gitlab.example.com", "https://user:pw@gitlab.example.com", "https://gitlab.example.com?x=1", "https://gitlab.example.com#f"} {
		i.SetURL(u)
		if _, err := i.Token(TokenOptions{}); err == nil || i.URL() != "" {
			t.Errorf("SetURL(%q) accepted", u)
		}
	}
	i.SetURL("https://gitlab.example.com/gitlab/")
	if i.URL() != "https://gitlab.example.com/gitlab" {
		t.Fatalf("URL %q", i.URL())
	}
}

func get(t *testing.T, h http.Handler, method, target, host string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if host != "" {
		r.Host = host
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandler(t *testing.T) {
	i := newIssuer(t, nil)
	h := i.Handler()
	// No URL yet: 503, never a guess from Host.
	if w := get(t, h, "GET", DiscoveryPath, "evil.example"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("no URL: %d", w.Code)
	}
	i.SetURL("https://gitlab.example.com/gitlab")
	w := get(t, h, "GET", "/gitlab"+DiscoveryPath, "evil.example")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("discovery: %d %v", w.Code, w.Header())
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != "https://gitlab.example.com/gitlab" || doc["jwks_uri"] != "https://gitlab.example.com/gitlab/oauth/discovery/keys" ||
		strings.Contains(w.Body.String(), "evil") {
		t.Fatalf("discovery doc %v", doc)
	}
	w = get(t, h, "GET", "/gitlab"+JWKSPath, "")
	if w.Code != 200 || w.Header().Get("Cache-Control") != "public, max-age=86400" {
		t.Fatalf("jwks: %d %v", w.Code, w.Header())
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != i.KeyID() || set.Keys[0]["kty"] != "RSA" || set.Keys[0]["alg"] != "RS256" ||
		set.Keys[0]["use"] != "sig" || set.Keys[0]["d"] != nil {
		t.Fatalf("jwks %v", set.Keys)
	}
	if w := get(t, h, "HEAD", "/gitlab"+JWKSPath, ""); w.Code != 200 {
		t.Fatalf("HEAD: %d", w.Code)
	}
	if w := get(t, h, "POST", "/gitlab"+DiscoveryPath, ""); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") == "" {
		t.Fatalf("POST: %d", w.Code)
	}
	if w := get(t, h, "GET", DiscoveryPath, ""); w.Code != http.StatusNotFound {
		t.Fatalf("path without prefix: %d", w.Code)
	}
	i.SetDown(true)
	for _, p := range []string{DiscoveryPath, JWKSPath} {
		if w := get(t, h, "GET", "/gitlab"+p, ""); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("down %s: %d", p, w.Code)
		}
	}
	i.SetDown(false)
	if w := get(t, h, "GET", "/gitlab"+JWKSPath, ""); w.Code != 200 {
		t.Fatalf("back up: %d", w.Code)
	}
}

func TestHeaders(t *testing.T) {
	i := newIssuer(t, func(o *Options) { o.Now = func() time.Time { return goldenNow } })
	i.SetURL("https://gitlab.example.com:8443")
	h := i.Headers("tok", TokenOptions{})
	want := map[string]string{
		"Authorization":                             "Bearer tok",
		"X-Gitlab-Authentication-Type":              "oidc",
		"Content-Type":                              "application/json",
		"X-Gitlab-Host-Name":                        "gitlab.example.com",
		"X-Gitlab-Instance-Id":                      i.InstanceID(),
		"X-Gitlab-Realm":                            "self-managed",
		"X-Gitlab-Deployment-Type":                  "self-managed",
		"X-Gitlab-Version":                          DefaultVersion,
		"X-Gitlab-Global-User-Id":                   i.GlobalUserID("1"),
		"X-Gitlab-User-Id":                          "1",
		"X-Gitlab-Duo-Seat-Count":                   "10",
		"X-Gitlab-Rails-Send-Start":                 "1760000000.000000",
		"X-Gitlab-Enabled-Instance-Verbose-Ai-Logs": "false",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"X-Request-Id", "X-Gitlab-Feature-Enablement-Type", "X-Gitlab-Is-Team-Member"} {
		if h.Get(k) == "" {
			t.Errorf("%s missing", k)
		}
	}
	if _, ok := h["X-Gitlab-Feature-Enabled-By-Namespace-Ids"]; !ok {
		t.Error("X-Gitlab-Feature-Enabled-By-Namespace-Ids missing")
	}
	if g := i.GlobalUserID("1"); len(g) != 44 || g == i.GlobalUserID("2") {
		t.Errorf("global user id %q", g)
	}
	if got := i.Headers("t", TokenOptions{GlobalUserID: "g", UserID: "7"}); got.Get("X-Gitlab-Global-User-Id") != "g" || got.Get("X-Gitlab-User-Id") != "7" {
		t.Errorf("overrides ignored: %v", got)
	}
	r := auth.RequestFromHeaders(h.Get)
	if r.AuthenticationType != auth.AuthTypeOIDC || r.DuoSeatCount != "10" || r.GlobalUserID == "" {
		t.Errorf("request %+v", r)
	}
}

// TestEndToEnd: jwks.Set fetches the issuer's JWKS over TLS; the validator
// accepts its tokens and headers, with and without kid, across a rotation.
func TestEndToEnd(t *testing.T) {
	i := newIssuer(t, nil)
	srv := serve(t, i)
	set := runSet(t, srv)
	waitFor(t, "JWKS ready", func() bool { return set.Status().Ready })
	v := newValidator(t, srv.URL, set)

	tok, h := mint(t, i, TokenOptions{})
	kid, _ := decodeSegment(t, tok, 0)["kid"].(string)
	pub, err := set.Key(context.Background(), kid)
	if err != nil || !pub.(*rsa.PublicKey).Equal(&testKey().PublicKey) {
		t.Fatalf("Key(%s): %v", kid, err)
	}
	c, err := validate(v, h)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != srv.URL || c.InstanceID != i.InstanceID() || c.Realm != DefaultRealm || c.SelfIssued ||
		c.GlobalUserID != h.Get("X-Gitlab-Global-User-Id") || !reflect.DeepEqual(c.Scopes, DefaultScopes) ||
		!reflect.DeepEqual(c.Audience, []string{DefaultAudience}) || c.IssuedAt.Sub(c.NotBefore) != NotBeforeSkew {
		t.Fatalf("claims %+v", c)
	}
	if err := v.RequireScopes(c, "complete_code", "duo_chat"); err != nil {
		t.Fatal(err)
	}

	// Without kid: tried against all keys.
	_, h = mint(t, i, TokenOptions{WithoutKid: true})
	if _, err := validate(v, h); err != nil {
		t.Fatalf("without kid: %v", err)
	}

	// Header cross-checks.
	_, h = mint(t, i, TokenOptions{})
	h.Set("X-Gitlab-Realm", "saas")
	if st, msg := authStatus(must2(validate(v, h))); st != 401 || msg != "Header mismatch 'X-Gitlab-Realm'" {
		t.Fatalf("realm mismatch: %d %q", st, msg)
	}
	_, h = mint(t, i, TokenOptions{})
	h.Set("X-Gitlab-Instance-Id", "other")
	if st, msg := authStatus(must2(validate(v, h))); st != 401 || msg != "Header mismatch 'X-Gitlab-Instance-Id'" {
		t.Fatalf("instance mismatch: %d %q", st, msg)
	}

	// Rotation: the new kid is unknown to the cached set → refetch → ok.
	_, oldH := mint(t, i, TokenOptions{})
	if err := i.Rotate(); err != nil {
		t.Fatal(err)
	}
	newTok, h := mint(t, i, TokenOptions{})
	newKid, _ := decodeSegment(t, newTok, 0)["kid"].(string)
	if newKid == kid || newKid != i.KeyID() || len(set.Keys()) != 1 {
		t.Fatalf("rotation: kid %s → %s, cached %d keys", kid, newKid, len(set.Keys()))
	}
	fetches := set.Status().Fetches
	if _, err := validate(v, h); err != nil {
		t.Fatalf("after rotate: %v", err)
	}
	if st := set.Status(); st.Fetches <= fetches || st.KeyCount != 2 {
		t.Fatalf("no refetch: %+v", st)
	}
	if _, err := validate(v, oldH); err != nil {
		t.Fatalf("old token after rotate: %v", err)
	}
	_, h = mint(t, i, TokenOptions{WithoutKid: true})
	if _, err := validate(v, h); err != nil {
		t.Fatalf("without kid after rotate: %v", err)
	}

	// A token from another demo issuer with the same URL is refused.
	other := newIssuer(t, func(o *Options) { o.Key = nil; o.InstanceID = i.InstanceID() })
	other.SetURL(srv.URL)
	_, h = mint(t, other, TokenOptions{})
	if st, msg := authStatus(must2(validate(v, h))); st != 401 || msg != auth.MsgForbidden {
		t.Fatalf("foreign key: %d %q", st, msg)
	}
}

func must2(_ *auth.Claims, err error) error { return err }

// TestIssuerDown: while SetDown(true) the set is not ready and the validator
// answers 503; after SetDown(false) it recovers without a restart.
func TestIssuerDown(t *testing.T) {
	i := newIssuer(t, nil)
	srv := serve(t, i)
	i.SetDown(true)
	set := runSet(t, srv)
	waitFor(t, "a failed fetch", func() bool { return set.Status().Failures >= 2 })
	st := set.Status()
	if st.Ready || !strings.Contains(st.LastError, "503") {
		t.Fatalf("status while down: %+v", st)
	}
	_, err := set.Key(context.Background(), i.KeyID())
	if !errors.Is(err, jwks.ErrNotReady) {
		t.Fatalf("Key while down: %v", err)
	}
	v := newValidator(t, srv.URL, set)
	for _, noKid := range []bool{false, true} {
		_, h := mint(t, i, TokenOptions{WithoutKid: noKid})
		if st, msg := authStatus(must2(validate(v, h))); st != http.StatusServiceUnavailable || msg != auth.MsgKeysNotReady {
			t.Fatalf("validate while down (noKid=%v): %d %q", noKid, st, msg)
		}
	}
	i.SetDown(false)
	waitFor(t, "recovery", func() bool { return set.Status().Ready })
	_, h := mint(t, i, TokenOptions{})
	if _, err := validate(v, h); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestServedOverTLS: discovery through a real client uses the configured
// URL even when the request names another Host.
func TestServedOverTLS(t *testing.T) {
	i := newIssuer(t, nil)
	srv := serve(t, i)
	req, err := http.NewRequest("GET", srv.URL+DiscoveryPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "attacker.example"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != srv.URL || doc["jwks_uri"] != srv.URL+JWKSPath {
		t.Fatalf("doc %v", doc)
	}
}

func TestConcurrentUse(t *testing.T) {
	i := newIssuer(t, nil)
	i.SetURL(goldenURL)
	h := i.Handler()
	var wg sync.WaitGroup
	for n := range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := i.Token(TokenOptions{WithoutKid: n%2 == 0}); err != nil {
					t.Error(err)
					return
				}
				_ = get(t, h, "GET", JWKSPath, "")
				i.SetDown(false)
			}
		})
	}
	wg.Go(func() {
		if err := i.Rotate(); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	if len(i.PublicKeys()) != 2 {
		t.Fatalf("%d keys", len(i.PublicKeys()))
	}
}
