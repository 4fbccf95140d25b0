package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestValidateAccepts(t *testing.T) {
	e := newEnv(t, nil)
	k := e.k
	leeway := DefaultLeeway
	now := testNow.Unix()
	const sec = 1
	lw := int64(leeway / time.Second)
	selfSigner := &Signer{Key: k.self, KeyID: testSelfKid, Issuer: testAudience, Now: func() time.Time { return testNow }}

	tests := []struct {
		name  string
		token func() string
		req   func(string) Request
		check func(*testing.T, *Claims)
	}{
		{name: "gitlab token, aud array, kid thumbprint", token: func() string { return mintGitLab(t, k, tok{}) },
			check: func(t *testing.T, c *Claims) {
				if c.Issuer != testGitLab || c.Subject != testInstance || c.InstanceID != testInstance || c.Realm != testRealm ||
					c.GlobalUserID != testGUID || c.SelfIssued || !slices.Equal(c.Scopes, testScopes) ||
					!slices.Equal(c.Audience, []string{"gitlab-ai-gateway", "gitlab-duo-workflow-service"}) ||
					!c.IssuedAt.Equal(testNow) || !c.NotBefore.Equal(testNow.Add(-5*time.Second)) || !c.ExpiresAt.Equal(testNow.Add(time.Hour)) ||
					c.JTI == "" {
					t.Errorf("claims = %+v", c)
				}
				if v, ok := c.Claim("skip_usage_cutoff"); !ok || v != false {
					t.Errorf("skip_usage_cutoff = %v, %v", v, ok)
				}
			}},
		{name: "aud as string (legacy AvailableServices)", token: func() string { return mintGitLab(t, k, tok{claims: map[string]any{"aud": "gitlab-ai-gateway"}}) },
			check: func(t *testing.T, c *Claims) {
				if !slices.Equal(c.Audience, []string{"gitlab-ai-gateway"}) {
					t.Errorf("aud = %v", c.Audience)
				}
			}},
		{name: "no kid (oldest Rails), key found among All", token: func() string { return mintGitLab(t, k, tok{key: k.gitlab2, noKid: true}) }},
		{name: "rotated second GitLab key by kid", token: func() string { return mintGitLab(t, k, tok{key: k.gitlab2}) }},
		{name: "typ absent", token: func() string { return mintGitLab(t, k, tok{header: map[string]any{"typ": nil}}) }},
		{name: "typ lower case", token: func() string { return mintGitLab(t, k, tok{header: map[string]any{"typ": "jwt"}}) }},
		{name: "gitlab_instance_id claim matching header", token: func() string {
			return mintGitLab(t, k, tok{claims: map[string]any{"gitlab_instance_id": testInstance}})
		}},
		{name: "bearer scheme lower case", token: func() string { return mintGitLab(t, k, tok{}) },
			req: func(s string) Request { r := gitlabRequest(s); r.Authorization = "bearer " + s; return r }},
		{name: "bearer scheme upper case", token: func() string { return mintGitLab(t, k, tok{}) },
			req: func(s string) Request { r := gitlabRequest(s); r.Authorization = "BEARER " + s; return r }},
		{name: "self-issued user token", token: func() string {
			c := &Claims{Issuer: testGitLab, Realm: testRealm, InstanceID: testInstance, GlobalUserID: testGUID, Scopes: []string{"complete_code"}}
			s, _, err := selfSigner.UserAccessToken(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, check: func(t *testing.T, c *Claims) {
			if !c.SelfIssued || c.Subject != testGUID || c.GlobalUserID != testGUID || c.InstanceID != testInstance || !slices.Equal(c.Scopes, []string{"complete_code"}) {
				t.Errorf("claims = %+v", c)
			}
		}},
		{name: "leeway: expired less than leeway ago", token: func() string {
			return mintGitLab(t, k, tok{claims: map[string]any{"iat": now - 3600, "nbf": now - 3605, "exp": now - lw + sec}})
		}},
		{name: "leeway: nbf just inside leeway", token: func() string {
			return mintGitLab(t, k, tok{claims: map[string]any{"iat": now, "nbf": now + lw - sec}})
		}},
		{name: "leeway: iat just inside leeway (GitLab clock ahead)", token: func() string {
			return mintGitLab(t, k, tok{claims: map[string]any{"iat": now + lw - sec, "nbf": now + lw - sec - 5}})
		}},
		// Non-ASCII text, escapes and nesting in the payload:
		// kept as claims exactly.
		{name: "payload with non-ASCII text and nesting", token: func() string {
			return mintGitLab(t, k, tok{claims: map[string]any{"note": "Zoë <&>", "extra": map[string]any{"a": []any{1.0}}}})
		}, check: func(t *testing.T, c *Claims) {
			if v, _ := c.Claim("note"); v != "Zoë <&>" {
				t.Errorf("note = %#v", v)
			}
			if v, _ := c.Claim("extra"); fmt.Sprint(v) != "map[a:[1]]" {
				t.Errorf("extra = %#v", v)
			}
			if c.Issuer != testGitLab || !slices.Equal(c.Scopes, testScopes) {
				t.Errorf("claims = %+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.token()
			req := gitlabRequest(s)
			if tc.req != nil {
				req = tc.req(s)
			}
			c, err := e.v.Validate(context.Background(), req)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// reject is one row of the negative table.
type reject struct {
	name   string
	req    func(e *env) Request
	status int
	msg    string
	reason string // substring of the internal reason ("" = any)
	junk   bool   // must be refused before any KeySource call
}

func withToken(f func(e *env) string) func(e *env) Request {
	return func(e *env) Request { return gitlabRequest(f(e)) }
}

func mintWith(t tok) func(e *env) Request {
	return func(e *env) Request { return gitlabRequest(mintGitLab(testingTB, e.k, t)) }
}

// testingTB lets row constructors mint outside a *testing.T; minting only
// fails on programming errors.
var testingTB testing.TB = panicTB{}

type panicTB struct{ testing.TB }

func (panicTB) Helper()           {}
func (panicTB) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

func rsaSizedSig() []byte { return make([]byte, 256) }

func rejectRows() []reject {
	now := testNow.Unix()
	lw := int64(DefaultLeeway / time.Second)
	hdr := func(h map[string]any) func(e *env) Request {
		return withToken(func(e *env) string {
			b := map[string]any{"alg": "RS256", "typ": "JWT"}
			for n, v := range h {
				b[n] = v
			}
			return rawToken(mustJSON(b), mustJSON(gitlabClaims()), rsaSizedSig())
		})
	}
	F, U := MsgForbidden, http.StatusUnauthorized
	return []reject{
		{name: "no authorization header", req: func(e *env) Request { r := gitlabRequest("x"); r.Authorization = ""; return r }, status: U, msg: MsgNoAuthorization, junk: true},
		{name: "basic scheme", req: func(e *env) Request { r := gitlabRequest("x"); r.Authorization = "Basic dXNlcjpwYXNz"; return r }, status: U, msg: MsgInvalidAuthHeader, junk: true},
		{name: "bearer without space", req: func(e *env) Request { r := gitlabRequest("x"); r.Authorization = "Bearer" + "abc.def.ghi"; return r }, status: U, msg: MsgInvalidAuthHeader, junk: true},
		{name: "empty bearer (Rails without token)", req: func(e *env) Request { r := gitlabRequest("x"); r.Authorization = "Bearer "; return r }, status: U, msg: F, reason: "empty", junk: true},
		{name: "auth type missing", req: func(e *env) Request {
			r := gitlabRequest(mintGitLab(testingTB, e.k, tok{}))
			r.AuthenticationType = ""
			return r
		}, status: U, msg: MsgInvalidAuthType, junk: true},
		{name: "auth type OIDC upper case", req: func(e *env) Request {
			r := gitlabRequest(mintGitLab(testingTB, e.k, tok{}))
			r.AuthenticationType = "OIDC"
			return r
		}, status: U, msg: MsgInvalidAuthType, junk: true},
		{name: "oversized token", req: mintWith(tok{claims: map[string]any{"pad": strings.Repeat("a", 9000)}}), status: U, msg: F, reason: "larger than limit", junk: true},
		{name: "two segments", req: withToken(func(e *env) string { s := mintGitLab(testingTB, e.k, tok{}); return s[:strings.LastIndexByte(s, '.')] }), status: U, msg: F, reason: "fewer than three", junk: true},
		{name: "four segments", req: withToken(func(e *env) string { return mintGitLab(testingTB, e.k, tok{}) + ".AAAA" }), status: U, msg: F, reason: "more than three", junk: true},
		{name: "empty payload segment", req: withToken(func(e *env) string {
			s := strings.Split(mintGitLab(testingTB, e.k, tok{}), ".")
			return s[0] + ".." + s[2]
		}), status: U, msg: F, reason: "empty segment", junk: true},
		{name: "bad base64: std alphabet", req: withToken(func(e *env) string { return "eyJ+" + mintGitLab(testingTB, e.k, tok{}) }), status: U, msg: F, reason: "non-base64url", junk: true},
		{name: "bad base64: padding", req: withToken(func(e *env) string {
			s := strings.Split(mintGitLab(testingTB, e.k, tok{}), ".")
			return s[0] + "==." + s[1] + "." + s[2]
		}), status: U, msg: F, reason: "non-base64url", junk: true},
		{name: "bad base64: impossible length", req: withToken(func(e *env) string {
			s := strings.Split(mintGitLab(testingTB, e.k, tok{}), ".")
			return s[0] + "." + s[1] + "." + s[2] + "AAA"
		}), status: U, msg: F, reason: "impossible base64 length", junk: true},
		{name: "header not JSON", req: withToken(func(e *env) string { return rawToken("not json", mustJSON(gitlabClaims()), rsaSizedSig()) }), status: U, msg: F, reason: "not a JSON object", junk: true},
		{name: "payload not JSON", req: withToken(func(e *env) string { return rawToken(`{"alg":"RS256","typ":"JWT"}`, "{nope", rsaSizedSig()) }), status: U, msg: F, junk: true},
		{name: "alg none, empty signature", req: withToken(func(e *env) string { return rawToken(`{"alg":"none","typ":"JWT"}`, mustJSON(gitlabClaims()), nil) + "" }), status: U, msg: F, reason: "empty segment", junk: true},
		{name: "alg none with signature", req: hdr(map[string]any{"alg": "none"}), status: U, msg: F, reason: "alg must be RS256", junk: true},
		{name: "alg None", req: hdr(map[string]any{"alg": "None"}), status: U, msg: F, reason: "alg must be RS256", junk: true},
		{name: "alg missing", req: hdr(map[string]any{"alg": nil}), status: U, msg: F, reason: "alg must be RS256", junk: true},
		{name: "HS256 signed with the RSA public key as HMAC secret", req: withToken(func(e *env) string {
			pub := []byte(fmt.Sprintf("%x", e.k.gitlab.PublicKey.N.Bytes()))
			return mintGitLab(testingTB, e.k, tok{method: jwt.SigningMethodHS256, key: pub, header: map[string]any{"kid": thumbprint(&e.k.gitlab.PublicKey)}})
		}), status: U, msg: F, reason: "alg must be RS256", junk: true},
		{name: "ES256", req: withToken(func(e *env) string {
			return mintGitLab(testingTB, e.k, tok{method: jwt.SigningMethodES256, key: e.k.ec})
		}), status: U, msg: F, reason: "alg must be RS256", junk: true},
		{name: "PS256 with the right key", req: withToken(func(e *env) string { return mintGitLab(testingTB, e.k, tok{method: jwt.SigningMethodPS256}) }), status: U, msg: F, reason: "alg must be RS256", junk: true},
		{name: "RS256 with a short signature", req: withToken(func(e *env) string { return rawToken(`{"alg":"RS256"}`, mustJSON(gitlabClaims()), make([]byte, 64)) }), status: U, msg: F, reason: "signature length", junk: true},
		{name: "typ not JWT", req: hdr(map[string]any{"typ": "at+jwt"}), status: U, msg: F, reason: "typ", junk: true},
		{name: "crit header", req: hdr(map[string]any{"crit": []string{"exp"}}), status: U, msg: F, reason: "crit", junk: true},
		{name: "embedded jwk", req: hdr(map[string]any{"jwk": map[string]any{"kty": "RSA"}}), status: U, msg: F, reason: "jwk", junk: true},
		{name: "jku header", req: hdr(map[string]any{"jku": "http://evil/jwks"}), status: U, msg: F, reason: "jku", junk: true},
		{name: "kid path traversal", req: hdr(map[string]any{"kid": "../x"}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid URL", req: hdr(map[string]any{"kid": "http://evil/jwks"}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid 1 KiB", req: hdr(map[string]any{"kid": strings.Repeat("k", 1024)}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid control char", req: hdr(map[string]any{"kid": "abc\x00def"}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid newline", req: hdr(map[string]any{"kid": "abc\ndef"}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid empty", req: hdr(map[string]any{"kid": ""}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid number", req: hdr(map[string]any{"kid": 7}), status: U, msg: F, reason: "kid", junk: true},
		{name: "kid SQL", req: hdr(map[string]any{"kid": "x' OR '1'='1"}), status: U, msg: F, reason: "kid", junk: true},
		{name: "wrong issuer", req: mintWith(tok{claims: map[string]any{"iss": "https://evil.example.com"}}), status: U, msg: F, reason: "not a configured issuer", junk: true},
		{name: "iss missing", req: mintWith(tok{claims: map[string]any{"iss": nil}}), status: U, msg: F, reason: "iss missing", junk: true},
		{name: "iss not a string", req: mintWith(tok{claims: map[string]any{"iss": 5}}), status: U, msg: F, reason: "iss missing", junk: true},
		{name: "unknown kid", req: mintWith(tok{header: map[string]any{"kid": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}), status: U, msg: F, reason: "kid not found"},
		{name: "wrong signature (attacker key, GitLab kid)", req: withToken(func(e *env) string {
			return mintGitLab(testingTB, e.k, tok{key: e.k.attacker, header: map[string]any{"kid": thumbprint(&e.k.gitlab.PublicKey)}})
		}), status: U, msg: F, reason: "token rejected"},
		{name: "wrong signature without kid", req: withToken(func(e *env) string { return mintGitLab(testingTB, e.k, tok{key: e.k.attacker, noKid: true}) }), status: U, msg: F, reason: "token rejected"},
		{name: "tampered payload", req: withToken(func(e *env) string {
			s := strings.Split(mintGitLab(testingTB, e.k, tok{}), ".")
			mc := gitlabClaims()
			mc["scopes"] = []any{"everything"}
			return s[0] + "." + strings.Split(rawToken("{}", mustJSON(mc), nil), ".")[1] + "." + s[2]
		}), status: U, msg: F, reason: "token rejected"},
		{name: "GitLab iss signed with our self key (kid)", req: withToken(func(e *env) string {
			return mintGitLab(testingTB, e.k, tok{key: e.k.self, header: map[string]any{"kid": testSelfKid}})
		}), status: U, msg: F, reason: "kid not found"},
		{name: "GitLab iss signed with our self key (no kid)", req: withToken(func(e *env) string { return mintGitLab(testingTB, e.k, tok{key: e.k.self, noKid: true}) }), status: U, msg: F, reason: "token rejected"},
		{name: "self iss signed with GitLab key", req: withToken(func(e *env) string {
			return mintGitLab(testingTB, e.k, tok{claims: map[string]any{"iss": testAudience, "sub": testGUID}})
		}), status: U, msg: F, reason: "kid not found"},
		{name: "wrong aud", req: mintWith(tok{claims: map[string]any{"aud": []any{"gitlab-duo-workflow-service"}}}), status: U, msg: F, reason: "audience"},
		{name: "aud missing", req: mintWith(tok{claims: map[string]any{"aud": nil}}), status: U, msg: F, reason: "aud"},
		{name: "expired beyond leeway", req: mintWith(tok{claims: map[string]any{"iat": now - 7200, "nbf": now - 7205, "exp": now - lw - 1}}), status: U, msg: F, reason: "expired"},
		{name: "nbf in the future", req: mintWith(tok{claims: map[string]any{"nbf": now + lw + 1}}), status: U, msg: F, reason: "not valid yet"},
		{name: "iat in the future", req: mintWith(tok{claims: map[string]any{"iat": now + lw + 1, "nbf": nil}}), status: U, msg: F, reason: "before issued"},
		{name: "exp missing", req: mintWith(tok{claims: map[string]any{"exp": nil}}), status: U, msg: F, reason: "exp"},
		{name: "exp a string", req: mintWith(tok{claims: map[string]any{"exp": "tomorrow"}}), status: U, msg: F},
		{name: "sub not a string", req: mintWith(tok{claims: map[string]any{"sub": 42}}), status: U, msg: F, reason: "sub"},
		{name: "scopes not an array", req: mintWith(tok{claims: map[string]any{"scopes": "complete_code"}}), status: U, msg: F, reason: "scopes"},
		{name: "realm mismatch", req: func(e *env) Request {
			r := gitlabRequest(mintGitLab(testingTB, e.k, tok{}))
			r.Realm = "saas"
			return r
		}, status: U, msg: "Header mismatch 'X-Gitlab-Realm'"},
		{name: "realm header missing", req: func(e *env) Request { r := gitlabRequest(mintGitLab(testingTB, e.k, tok{})); r.Realm = ""; return r }, status: U, msg: "Header mismatch 'X-Gitlab-Realm'"},
		{name: "instance id (sub) mismatch", req: func(e *env) Request {
			r := gitlabRequest(mintGitLab(testingTB, e.k, tok{}))
			r.InstanceID = "other"
			return r
		}, status: U, msg: "Header mismatch 'X-Gitlab-Instance-Id'"},
		{name: "gitlab_instance_id claim mismatch", req: mintWith(tok{claims: map[string]any{"gitlab_instance_id": "other-instance"}}), status: U, msg: "Header mismatch 'X-Gitlab-Instance-Id'"},
		{name: "global user id mismatch (self-issued)", req: func(e *env) Request {
			c := &Claims{Issuer: testGitLab, Realm: testRealm, InstanceID: testInstance, GlobalUserID: testGUID, Scopes: []string{"complete_code"}}
			s, _, err := (&Signer{Key: e.k.self, KeyID: testSelfKid, Issuer: testAudience, Now: func() time.Time { return testNow }}).UserAccessToken(c, nil)
			if err != nil {
				panic(err)
			}
			r := gitlabRequest(s)
			r.GlobalUserID = "someone-else"
			return r
		}, status: U, msg: "Header mismatch 'X-Gitlab-Global-User-Id'"},
	}
}

func checkErr(t *testing.T, err error, status int, msg, reason string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if ae.Status != status || ae.Message != msg {
		t.Fatalf("got %d %q (%s), want %d %q", ae.Status, ae.Message, ae.Reason, status, msg)
	}
	if reason != "" && !strings.Contains(ae.Error(), reason) {
		t.Fatalf("reason %q does not mention %q", ae.Error(), reason)
	}
}

func TestValidateRejects(t *testing.T) {
	for _, row := range rejectRows() {
		t.Run(row.name, func(t *testing.T) {
			e := newEnv(t, nil)
			req := row.req(e)
			c, err := e.v.Validate(context.Background(), req)
			if c != nil {
				t.Fatalf("accepted: %+v", c)
			}
			checkErr(t, err, row.status, row.msg, row.reason)
		})
	}
}

// TestJunkNeverReachesKeySource: everything wrong with the token's shape,
// header, kid or issuer is refused before a KeySource is asked.
func TestJunkNeverReachesKeySource(t *testing.T) {
	n := 0
	for _, row := range rejectRows() {
		if !row.junk {
			continue
		}
		n++
		e := newEnv(t, nil)
		if _, err := e.v.Validate(context.Background(), row.req(e)); err == nil {
			t.Fatalf("%s: accepted", row.name)
		}
		if got := e.gitlab.calls() + e.self.calls(); got != 0 {
			t.Errorf("%s: KeySource called %d times", row.name, got)
		}
	}
	if n < 30 {
		t.Fatalf("only %d junk rows", n)
	}
	// Control: a well-formed token does reach it exactly once.
	e := newEnv(t, nil)
	if _, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{}))); err != nil {
		t.Fatal(err)
	}
	if e.gitlab.keyCalls.Load() != 1 || e.self.calls() != 0 {
		t.Fatalf("calls gitlab=%d self=%d", e.gitlab.keyCalls.Load(), e.self.calls())
	}
}

type notReadyErr struct{}

func (notReadyErr) Error() string  { return "jwks: not ready" }
func (notReadyErr) NotReady() bool { return true }

var errWiringNotReady = errors.New("jwks: keys not fetched yet")

func TestKeysNotReady(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *env)
		mod   func(*Config)
		noKid bool
	}{
		{name: "sentinel ErrKeysNotReady", setup: func(e *env) { e.gitlab.keyErr = fmt.Errorf("fetch: %w", ErrKeysNotReady) }},
		{name: "NotReady() interface", setup: func(e *env) { e.gitlab.keyErr = notReadyErr{} }},
		{name: "wiring-mapped sentinel", setup: func(e *env) { e.gitlab.keyErr = errWiringNotReady },
			mod: func(c *Config) { c.NotReadyErrors = []error{errWiringNotReady} }},
		{name: "context deadline during refetch", setup: func(e *env) { e.gitlab.keyErr = context.DeadlineExceeded }},
		{name: "no kid, empty source reporting not ready", noKid: true, setup: func(e *env) { e.gitlab.all = nil; e.gitlab.notReady = true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mod)
			tc.setup(e)
			_, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{noKid: tc.noKid})))
			checkErr(t, err, http.StatusServiceUnavailable, MsgKeysNotReady, "")
			if !errors.Is(err, ErrKeysNotReady) {
				t.Errorf("errors.Is(err, ErrKeysNotReady) = false: %v", err)
			}
			var ae *Error
			errors.As(err, &ae)
			if ae.RetryAfter <= 0 || string(ae.Body()) != `{"error":"`+MsgKeysNotReady+`"}` {
				t.Errorf("RetryAfter %v body %s", ae.RetryAfter, ae.Body())
			}
		})
	}
	// An unrelated KeySource error stays a 401, and an empty ready source too.
	e := newEnv(t, nil)
	e.gitlab.keyErr = errors.New("boom")
	_, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "boom")
	e = newEnv(t, nil)
	e.gitlab.all = nil
	_, err = e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{noKid: true})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "no usable keys")
}

func TestWeakOrForeignKeysIgnored(t *testing.T) {
	e := newEnv(t, nil)
	// A 1024-bit key's signature is refused by its length alone.
	e.gitlab.byKid[thumbprint(&e.k.weak.PublicKey)] = &e.k.weak.PublicKey
	_, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{key: e.k.weak})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "signature length")
	// A non-RSA key under the token's kid is never used.
	e.gitlab.byKid[thumbprint(&e.k.gitlab.PublicKey)] = &e.k.ec.PublicKey
	_, err = e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "at least 2048")
	// Without kid, weak and non-RSA keys are skipped.
	e.gitlab.all = append(e.gitlab.all[:0:0], &e.k.weak.PublicKey, &e.k.ec.PublicKey)
	_, err = e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{noKid: true})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "no usable keys")
}

func TestNoKidTriesAtMostMaxKeys(t *testing.T) {
	e := newEnv(t, nil)
	var many []any
	for range MaxKeysWithoutKid {
		many = append(many, &e.k.attacker.PublicKey)
	}
	e.gitlab.all = nil
	for _, k := range many {
		e.gitlab.all = append(e.gitlab.all, k)
	}
	e.gitlab.all = append(e.gitlab.all, &e.k.gitlab.PublicKey) // 17th: never tried
	_, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{noKid: true})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "token rejected")
}

func TestRequireScopes(t *testing.T) {
	e := newEnv(t, nil)
	c, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{})))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.v.RequireScopes(c, "complete_code", "duo_chat"); err != nil {
		t.Fatal(err)
	}
	err = e.v.RequireScopes(c, "complete_code", "duo_agent_platform")
	checkErr(t, err, http.StatusForbidden, "Unauthorized to access 'duo_agent_platform'", "missing scope")
	var ae *Error
	errors.As(err, &ae)
	if got := string(ae.Body()); got != `{"detail":"Unauthorized to access 'duo_agent_platform'"}` {
		t.Errorf("body %s", got)
	}
	if got := string(ae.WithMessage("Unauthorized to access code completions").Body()); got != `{"detail":"Unauthorized to access code completions"}` {
		t.Errorf("body %s", got)
	}
	checkErr(t, e.v.RequireScopes(nil, "complete_code"), http.StatusForbidden, "Unauthorized", "")
	if err := e.v.RequireAnyScope(c, "ai_gateway_model_provider_proxy", "complete_code"); err != nil {
		t.Fatal(err)
	}
	checkErr(t, e.v.RequireAnyScope(c, "duo_workflow_execute_workflow", "duo_agent_platform"), http.StatusForbidden, "Unauthorized to access 'duo_workflow_execute_workflow'", "")
}

func TestErrorBodies(t *testing.T) {
	cases := map[string]*Error{
		`{"error":"No authorization header presented"}`:                          unauthorized(MsgNoAuthorization, ""),
		`{"error":"Invalid authentication token type - only OIDC is supported"}`: unauthorized(MsgInvalidAuthType, ""),
		`{"error":"Header mismatch 'X-Gitlab-Realm'"}`:                           headerMismatch(HeaderRealm),
		`{"detail":"Unauthorized to create user access token"}`:                  Forbidden(MsgUserAccessTokenForbidden),
	}
	for want, e := range cases {
		if got := string(e.Body()); got != want {
			t.Errorf("Body = %s, want %s", got, want)
		}
	}
	e := forbiddenToken("secret detail", errors.New("cause"))
	if strings.Contains(string(e.Body()), "secret") || !strings.Contains(e.Error(), "secret detail") {
		t.Errorf("reason leaked or lost: body %s error %s", e.Body(), e.Error())
	}
}

func TestNewValidatorConfig(t *testing.T) {
	src := newSource(nil)
	bad := []Config{
		{},
		{Audience: testAudience},
		{Audience: testAudience, Issuers: []Issuer{{Name: "", Keys: src}}},
		{Audience: testAudience, Issuers: []Issuer{{Name: testGitLab}}},
		{Audience: testAudience, Issuers: []Issuer{{Name: testGitLab, Keys: src}, {Name: testGitLab, Keys: src}}},
	}
	for i, c := range bad {
		if _, err := NewValidator(c); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func TestCustomLimits(t *testing.T) {
	// Negative leeway: none at all (GitLab's own behaviour).
	e := newEnv(t, func(c *Config) { c.Leeway = -1 })
	now := testNow.Unix()
	_, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{claims: map[string]any{"exp": now - 1}})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "expired")
	// A smaller MaxTokenBytes refuses GitLab-sized tokens.
	e = newEnv(t, func(c *Config) { c.MaxTokenBytes = 256 })
	_, err = e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{})))
	checkErr(t, err, http.StatusUnauthorized, MsgForbidden, "larger than limit")
}

func TestRequestFromHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("authorization", "Bearer abc")
	h.Set("x-gitlab-authentication-type", "oidc")
	h.Set("x-gitlab-realm", testRealm)
	h.Set("x-gitlab-instance-id", testInstance)
	h.Set("x-gitlab-global-user-id", testGUID)
	r := RequestFromHeaders(h.Get)
	want := Request{Authorization: "Bearer abc", AuthenticationType: "oidc", Realm: testRealm, InstanceID: testInstance, GlobalUserID: testGUID}
	if r != want {
		t.Fatalf("got %+v", r)
	}
}
