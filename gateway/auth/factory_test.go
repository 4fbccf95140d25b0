package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Test identities, shaped like a real Self-Managed instance.
const (
	testGitLab   = "https://gitlab.example.com"
	testAudience = "gitlab-ai-gateway"
	testInstance = "5f1c2a4e-8b7d-4c3e-9a10-2b3c4d5e6f70"
	testRealm    = "self-managed"
	testGUID     = "Xb1uQ3f0pX0cKk8yqv7nT5Lw2Zp9hJ6mD4sA1eR8uYc="
	testSelfKid  = "gitlab-ai-gateway_signing_key"
)

// testNow is the fixed clock of every validator under test.
var testNow = time.Unix(1_760_000_000, 0)

// testScopes is what an entitled Self-Managed instance gets: all unit
// primitives, not just the one requested.
var testScopes = []string{"complete_code", "generate_code", "duo_chat", "documentation_search", "explain_code", "include_file_context"}

type testKeySet struct {
	gitlab, gitlab2, self, attacker, weak *rsa.PrivateKey
	ec                                    *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	tkeys    testKeySet
)

func keys(tb testing.TB) *testKeySet {
	tb.Helper()
	keysOnce.Do(func() {
		gen := func(bits int) *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			return k
		}
		tkeys.gitlab, tkeys.gitlab2, tkeys.self, tkeys.attacker = gen(2048), gen(2048), gen(2048), gen(2048)
		tkeys.weak = gen(1024)
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tkeys.ec = ec
	})
	return &tkeys
}

// thumbprint is the RFC 7638 JWK thumbprint GitLab uses as kid.
func thumbprint(pub *rsa.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	e := b64(big.NewInt(int64(pub.E)).Bytes())
	j := `{"e":"` + e + `","kty":"RSA","n":"` + b64(pub.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(j))
	return b64(sum[:])
}

var errTestUnknownKey = errors.New("jwks: unknown key")

// staticSource is a KeySource over fixed keys that counts its calls.
type staticSource struct {
	byKid    map[string]crypto.PublicKey
	all      []crypto.PublicKey
	keyErr   error // returned by Key instead of a lookup
	notReady bool
	keyCalls atomic.Int64
	allCalls atomic.Int64
}

func newSource(keys map[string]*rsa.PrivateKey) *staticSource {
	s := &staticSource{byKid: map[string]crypto.PublicKey{}}
	for kid, k := range keys {
		s.byKid[kid] = &k.PublicKey
		s.all = append(s.all, &k.PublicKey)
	}
	return s
}

func (s *staticSource) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	s.keyCalls.Add(1)
	if s.keyErr != nil {
		return nil, s.keyErr
	}
	k, ok := s.byKid[kid]
	if !ok {
		return nil, errTestUnknownKey
	}
	return k, nil
}

func (s *staticSource) All() []crypto.PublicKey { s.allCalls.Add(1); return s.all }
func (s *staticSource) Ready() bool             { return !s.notReady }
func (s *staticSource) calls() int64            { return s.keyCalls.Load() + s.allCalls.Load() }

// env is a validator wired to a GitLab issuer and our own issuer.
type env struct {
	v      *Validator
	gitlab *staticSource
	self   *staticSource
	k      *testKeySet
}

func newEnv(tb testing.TB, mod func(*Config)) *env {
	tb.Helper()
	k := keys(tb)
	e := &env{k: k}
	e.gitlab = newSource(map[string]*rsa.PrivateKey{thumbprint(&k.gitlab.PublicKey): k.gitlab, thumbprint(&k.gitlab2.PublicKey): k.gitlab2})
	e.self = newSource(map[string]*rsa.PrivateKey{testSelfKid: k.self})
	cfg := Config{
		Audience: testAudience,
		Issuers:  []Issuer{{Name: testGitLab, Keys: e.gitlab}, {Name: testAudience, Keys: e.self}},
		Now:      func() time.Time { return testNow },
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewValidator(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e.v = v
	return e
}

// gitlabClaims are the claims Rails' CloudConnector token issuer puts in an
// instance token (ee/lib/cloud_connector/tokens/token_issuer.rb).
func gitlabClaims() jwt.MapClaims {
	iat := testNow.Unix()
	scopes := make([]any, len(testScopes))
	for i, s := range testScopes {
		scopes[i] = s
	}
	return jwt.MapClaims{
		"jti":               "0b8c7c4e-0d1f-4f57-9a83-6f1a2b3c4d5e",
		"iss":               testGitLab,
		"sub":               testInstance,
		"aud":               []any{"gitlab-ai-gateway", "gitlab-duo-workflow-service"},
		"iat":               iat,
		"nbf":               iat - 5,
		"exp":               iat + 3600,
		"gitlab_realm":      testRealm,
		"scopes":            scopes,
		"skip_usage_cutoff": false,
	}
}

// gitlabRequest is the header set Rails sends alongside the token.
func gitlabRequest(token string) Request {
	return Request{
		Authorization:      "Bearer " + token,
		AuthenticationType: "oidc",
		Realm:              testRealm,
		InstanceID:         testInstance,
		GlobalUserID:       testGUID,
	}
}

// tok describes a token to mint: claim edits (nil value deletes), header
// edits, signing method and key.
type tok struct {
	claims map[string]any
	header map[string]any
	method jwt.SigningMethod
	key    any
	noKid  bool
}

// mintGitLab signs like Rails: RS256, typ JWT, kid = thumbprint of the
// signing key (default: the GitLab key).
func mintGitLab(tb testing.TB, k *testKeySet, t tok) string {
	tb.Helper()
	mc := gitlabClaims()
	for n, v := range t.claims {
		if v == nil {
			delete(mc, n)
		} else {
			mc[n] = v
		}
	}
	m := t.method
	if m == nil {
		m = jwt.SigningMethodRS256
	}
	key := t.key
	if key == nil {
		key = k.gitlab
	}
	jt := jwt.NewWithClaims(m, mc)
	if rk, ok := key.(*rsa.PrivateKey); ok && !t.noKid {
		jt.Header["kid"] = thumbprint(&rk.PublicKey)
	}
	for n, v := range t.header {
		if v == nil {
			delete(jt.Header, n)
		} else {
			jt.Header[n] = v
		}
	}
	s, err := jt.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// rawToken assembles a token from literal JSON and a signature, for shapes
// golang-jwt refuses to produce.
func rawToken(header, payload string, sig []byte) string {
	b := base64.RawURLEncoding.EncodeToString
	return b([]byte(header)) + "." + b([]byte(payload)) + "." + b(sig)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
