// Package gitlabtest is a DEMO GitLab token issuer for tests and the demo
// command. It is NOT GitLab and must never be used as a trust anchor in
// production.
//
// It serves OpenID discovery (GET /.well-known/openid-configuration) and a
// JWKS (GET /oauth/discovery/keys) the way a GitLab Self-Managed instance
// does, and mints instance tokens shaped exactly like the ones Rails
// self-signs for self-hosted AI features (ee/lib/cloud_connector/tokens/
// token_issuer.rb): header {alg:RS256, kid:<RFC 7638 thumbprint>, typ:JWT};
// claims jti, iss (the instance URL), sub (the instance UUID), aud (array),
// iat, nbf = iat − 5 s, exp, gitlab_realm, scopes (unit primitives) and
// skip_usage_cutoff. Headers returns the headers Rails sends with such a
// token.
//
// The issuer URL (iss, discovery "issuer", jwks_uri) is fixed by SetURL and
// is never derived from the request's Host header.
package gitlabtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duo-confidential/duo-confidential/jwks"
)

// Defaults applied by New and Token.
const (
	DefaultAudience   = "gitlab-ai-gateway"
	DefaultRealm      = "self-managed"
	DefaultKeyBits    = 2048
	DefaultTTL        = time.Hour
	DefaultVersion    = "18.4.1"
	DefaultSeatCount  = 10
	DefaultUserID     = "1"
	DefaultJWKSMaxAge = 24 * time.Hour // GitLab: Cache-Control: public, max-age=86400
	// NotBeforeSkew is how far Rails back-dates nbf from iat.
	NotBeforeSkew = 5 * time.Second
	// MaxKeys is how many signing keys the JWKS keeps after Rotate (newest
	// first); older ones are dropped.
	MaxKeys = 8
)

// Paths the Handler serves, relative to the issuer URL's path.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/oauth/discovery/keys"
)

// DefaultScopes are the unit primitives of an instance entitled to Duo code
// suggestions and chat. GitLab puts all entitled primitives in scopes, not
// just the one a request needs.
var DefaultScopes = []string{
	"complete_code",
	"generate_code",
	"duo_chat",
	"documentation_search",
	"explain_code",
	"include_file_context",
}

// Options configures a demo Issuer. Zero values select the defaults.
type Options struct {
	// URL, if set, fixes the issuer URL at construction (as SetURL, but an
	// invalid URL makes New fail). Leave it empty when the URL is only
	// known after the server starts, and call SetURL then.
	URL string
	// Audience is the backend audience put in aud (default
	// "gitlab-ai-gateway").
	Audience string
	// Realm is gitlab_realm and X-Gitlab-Realm (default "self-managed").
	Realm string
	// InstanceID is the instance UUID (sub and X-Gitlab-Instance-Id);
	// default a random UUIDv4.
	InstanceID string
	// Now is the clock for iat/nbf/exp (default time.Now).
	Now func() time.Time
	// KeyBits is the RSA size of generated keys (default 2048, minimum
	// 2048 as the gateway refuses smaller keys).
	KeyBits int
	// Key, if set, is the initial signing key instead of a generated one
	// (golden tests use a fixed key so kid and signature are stable).
	Key *rsa.PrivateKey
	// Version is X-Gitlab-Version (default "18.4.1").
	Version string
	// SeatCount is X-Gitlab-Duo-Seat-Count (default 10).
	SeatCount int
	// GlobalIDSalt salts GlobalUserID like Rails' db_key_base does
	// (default a fixed demo salt).
	GlobalIDSalt string
	// JWKSMaxAge is the JWKS Cache-Control max-age (default 24h, as
	// GitLab).
	JWKSMaxAge time.Duration
}

// TokenOptions describes one token (and the headers sent with it).
type TokenOptions struct {
	// Scopes are the unit primitives; nil means DefaultScopes, an empty
	// non-nil slice an empty array.
	Scopes []string
	// Audiences overrides aud (default [Options.Audience]); aud is always
	// an array, as in current GitLab.
	Audiences []string
	// GlobalUserID is X-Gitlab-Global-User-Id. GitLab's instance token does
	// not carry it, so Token ignores it; Headers defaults it to
	// GlobalUserID(UserID).
	GlobalUserID string
	// UserID is X-Gitlab-User-Id (default "1"); Headers only.
	UserID string
	// TTL is exp − iat (default 1h, as Rails).
	TTL time.Duration
	// Subject is sub (default the instance UUID, as Rails does).
	Subject string
	// JTI is jti (default a random UUIDv4).
	JTI string
	// WithoutKid omits kid from the header, like the oldest GitLab builds.
	WithoutKid bool
	// ExtraClaims are set last, overriding standard claims; a nil value
	// deletes the claim.
	ExtraClaims map[string]any
}

type signingKey struct {
	priv *rsa.PrivateKey
	kid  string
}

// Issuer is a demo GitLab instance: discovery, JWKS and tokens. It is safe
// for concurrent use.
type Issuer struct {
	o Options

	mu     sync.RWMutex
	url    *url.URL // nil until SetURL with a valid URL
	urlErr error
	keys   []signingKey // newest first; keys[0] signs
	jwks   []byte
	down   bool
	admin  *Admin // the admin API stand-in, if any (SetAdmin)
}

// New returns a demo issuer with one signing key. Unless Options.URL is
// set, call SetURL before minting tokens or serving discovery.
func New(o Options) (*Issuer, error) {
	if o.Audience == "" {
		o.Audience = DefaultAudience
	}
	if o.Realm == "" {
		o.Realm = DefaultRealm
	}
	if o.InstanceID == "" {
		id, err := newUUID()
		if err != nil {
			return nil, err
		}
		o.InstanceID = id
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeyBits == 0 {
		o.KeyBits = DefaultKeyBits
	}
	if o.KeyBits < jwks.MinRSABits {
		return nil, fmt.Errorf("gitlabtest: KeyBits %d is below %d", o.KeyBits, jwks.MinRSABits)
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.SeatCount == 0 {
		o.SeatCount = DefaultSeatCount
	}
	if o.GlobalIDSalt == "" {
		o.GlobalIDSalt = "duo-confidential-demo-salt"
	}
	if o.JWKSMaxAge <= 0 {
		o.JWKSMaxAge = DefaultJWKSMaxAge
	}
	i := &Issuer{o: o, urlErr: errors.New("gitlabtest: issuer URL not set (call SetURL)")}
	key := o.Key
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, o.KeyBits); err != nil {
			return nil, fmt.Errorf("gitlabtest: generate key: %w", err)
		}
	}
	if err := i.addKey(key); err != nil {
		return nil, err
	}
	if o.URL != "" {
		i.SetURL(o.URL)
		if i.URL() == "" {
			return nil, i.urlErr
		}
	}
	return i, nil
}

// addKey makes key the signing key and republishes the JWKS.
func (i *Issuer) addKey(key *rsa.PrivateKey) error {
	kid, err := jwks.Thumbprint(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("gitlabtest: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	keys := append([]signingKey{{priv: key, kid: kid}}, i.keys...)
	if len(keys) > MaxKeys {
		keys = keys[:MaxKeys]
	}
	pubs := make([]crypto.PublicKey, len(keys))
	for n, k := range keys {
		pubs[n] = &k.priv.PublicKey
	}
	body, err := jwks.Publish(pubs...)
	if err != nil {
		return fmt.Errorf("gitlabtest: %w", err)
	}
	i.keys, i.jwks = keys, body
	return nil
}

// Rotate generates a new signing key. The JWKS then serves the new key
// first and the previous ones after it (up to MaxKeys), so tokens minted
// before stay valid and a gateway holding the old JWKS sees an unknown kid.
func (i *Issuer) Rotate() error {
	key, err := rsa.GenerateKey(rand.Reader, i.o.KeyBits)
	if err != nil {
		return fmt.Errorf("gitlabtest: generate key: %w", err)
	}
	return i.addKey(key)
}

// SetURL fixes the issuer URL (iss, discovery "issuer", base of jwks_uri),
// e.g. an httptest server's URL. A trailing slash is removed. An invalid URL
// (not http(s), no host, or with credentials, query or fragment) makes Token
// fail and the Handler answer 503 until a valid one is set.
func (i *Issuer) SetURL(u string) {
	parsed, err := url.Parse(strings.TrimRight(u, "/"))
	if err == nil && ((parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" ||
		parsed.User != nil || parsed.RawQuery != "" || parsed.Fragment != "") {
		err = errors.New("need an http(s) URL without credentials, query or fragment")
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if err != nil {
		i.url, i.urlErr = nil, fmt.Errorf("gitlabtest: invalid issuer URL %q: %w", u, err)
		return
	}
	i.url, i.urlErr = parsed, nil
}

// URL returns the issuer URL set by SetURL, or "" if none is valid.
func (i *Issuer) URL() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	if i.url == nil {
		return ""
	}
	return i.url.String()
}

// InstanceID returns the instance UUID (sub, X-Gitlab-Instance-Id).
func (i *Issuer) InstanceID() string { return i.o.InstanceID }

// Realm returns gitlab_realm / X-Gitlab-Realm.
func (i *Issuer) Realm() string { return i.o.Realm }

// KeyID returns the kid of the current signing key.
func (i *Issuer) KeyID() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.keys[0].kid
}

// PublicKeys returns the published public keys, newest first.
func (i *Issuer) PublicKeys() []*rsa.PublicKey {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]*rsa.PublicKey, len(i.keys))
	for n, k := range i.keys {
		out[n] = &k.priv.PublicKey
	}
	return out
}

// SetDown makes the Handler answer 503 on discovery and JWKS (GitLab
// unreachable or failing) while down is true. Tokens can still be minted.
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// Claims returns the claims Token would sign for c, at the current Now.
func (i *Issuer) Claims(c TokenOptions) (map[string]any, error) {
	i.mu.RLock()
	u, uerr := i.url, i.urlErr
	i.mu.RUnlock()
	if u == nil {
		return nil, uerr
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	jti := c.JTI
	if jti == "" {
		var err error
		if jti, err = newUUID(); err != nil {
			return nil, err
		}
	}
	sub := c.Subject
	if sub == "" {
		sub = i.o.InstanceID
	}
	scopes := c.Scopes
	if scopes == nil {
		scopes = DefaultScopes
	}
	aud := c.Audiences
	if len(aud) == 0 {
		aud = []string{i.o.Audience}
	}
	iat := i.o.Now().Unix()
	mc := map[string]any{
		"jti":               jti,
		"iss":               u.String(),
		"sub":               sub,
		"aud":               toAny(aud),
		"iat":               iat,
		"nbf":               iat - int64(NotBeforeSkew/time.Second),
		"exp":               iat + int64(ttl/time.Second),
		"gitlab_realm":      i.o.Realm,
		"scopes":            toAny(scopes),
		"skip_usage_cutoff": false,
	}
	for k, v := range c.ExtraClaims {
		if v == nil {
			delete(mc, k)
		} else {
			mc[k] = v
		}
	}
	return mc, nil
}

// Token mints an instance token like Rails' self-signed CloudConnector
// token: RS256, typ JWT, kid = RFC 7638 thumbprint of the current key
// (unless WithoutKid). It fails if SetURL has not set a valid URL.
func (i *Issuer) Token(c TokenOptions) (string, error) {
	mc, err := i.Claims(c)
	if err != nil {
		return "", err
	}
	i.mu.RLock()
	key := i.keys[0]
	i.mu.RUnlock()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(mc))
	if !c.WithoutKid {
		t.Header["kid"] = key.kid
	}
	s, err := t.SignedString(key.priv)
	if err != nil {
		return "", fmt.Errorf("gitlabtest: sign: %w", err)
	}
	return s, nil
}

// GlobalUserID returns a global user id shaped like Rails'
// Gitlab::GlobalAnonymousId (base64 SHA-256 of instance id, user id and a
// salt). Only its shape matches GitLab; the value is demo-specific.
func (i *Issuer) GlobalUserID(userID string) string {
	sum := sha256.Sum256([]byte(i.o.InstanceID + userID + i.o.GlobalIDSalt))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Headers returns the headers Rails sends with token on a gateway call
// (gitlab-ai-gateway.md §2.1): Authorization, X-Gitlab-Authentication-Type: oidc,
// Content-Type, X-Request-Id, X-Gitlab-Rails-Send-Start, host name,
// instance id, realm, deployment type, version, global and local user id,
// feature enablement headers, verbose AI logs flag, team-member flag and
// Duo seat count. c supplies GlobalUserID and UserID.
func (i *Issuer) Headers(token string, c TokenOptions) http.Header {
	userID := c.UserID
	if userID == "" {
		userID = DefaultUserID
	}
	guid := c.GlobalUserID
	if guid == "" {
		guid = i.GlobalUserID(userID)
	}
	host := ""
	i.mu.RLock()
	if i.url != nil {
		host = i.url.Hostname()
	}
	i.mu.RUnlock()
	deployment := i.o.Realm
	if deployment == "saas" {
		deployment = ".com"
	}
	now := i.o.Now()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("X-Gitlab-Authentication-Type", "oidc")
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-Id", randomHex(13))
	h.Set("X-Gitlab-Rails-Send-Start", strconv.FormatFloat(float64(now.UnixNano())/1e9, 'f', 6, 64))
	h.Set("X-Gitlab-Host-Name", host)
	h.Set("X-Gitlab-Instance-Id", i.o.InstanceID)
	h.Set("X-Gitlab-Realm", i.o.Realm)
	h.Set("X-Gitlab-Deployment-Type", deployment)
	h.Set("X-Gitlab-Version", i.o.Version)
	h.Set("X-Gitlab-Global-User-Id", guid)
	h.Set("X-Gitlab-User-Id", userID)
	h.Set("X-Gitlab-Feature-Enabled-By-Namespace-Ids", "")
	h.Set("X-Gitlab-Feature-Enablement-Type", "add_on")
	h.Set("X-Gitlab-Enabled-Feature-Flags", "")
	h.Set("X-Gitlab-Enabled-Instance-Verbose-Ai-Logs", "false")
	h.Set("X-Gitlab-Is-Team-Member", "false")
	h.Set("X-Gitlab-Duo-Seat-Count", strconv.Itoa(i.o.SeatCount))
	return h
}

// Handler serves GET/HEAD of DiscoveryPath and JWKSPath under the issuer
// URL's path (so an issuer URL "https://h/gitlab" is served at
// /gitlab/.well-known/openid-configuration). It answers 503 while SetDown
// is true or no valid URL is set, 405 for other methods and 404 elsewhere.
// The Host header is never used.
func (i *Issuer) Handler() http.Handler {
	return http.HandlerFunc(i.serveHTTP)
}

func (i *Issuer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	i.mu.RLock()
	u, down, body := i.url, i.down, i.jwks
	i.mu.RUnlock()
	prefix := ""
	if u != nil {
		prefix = u.Path
	}
	var isJWKS bool
	switch r.URL.Path {
	case prefix + DiscoveryPath:
	case prefix + JWKSPath:
		isJWKS = true
	default:
		if h := i.adminRoute(prefix, r.URL.Path); h != nil {
			h.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if down || u == nil {
		http.Error(w, "demo GitLab issuer unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if isJWKS {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.FormatInt(int64(i.o.JWKSMaxAge/time.Second), 10))
		_, _ = w.Write(body)
		return
	}
	_, _ = w.Write(discovery(u.String()))
}

// discovery is a Doorkeeper-OpenID-Connect-shaped discovery document.
func discovery(base string) []byte {
	doc := map[string]any{
		"issuer":                                base,
		"authorization_endpoint":                base + "/oauth/authorize",
		"token_endpoint":                        base + "/oauth/token",
		"revocation_endpoint":                   base + "/oauth/revoke",
		"introspection_endpoint":                base + "/oauth/introspect",
		"userinfo_endpoint":                     base + "/oauth/userinfo",
		"jwks_uri":                              base + JWKSPath,
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query", "fragment"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claim_types_supported":                 []string{"normal"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username", "email", "email_verified", "website", "profile", "picture", "groups", "groups_direct", "https://gitlab.org/claims/groups/owner", "https://gitlab.org/claims/groups/maintainer", "https://gitlab.org/claims/groups/developer"},
	}
	b, err := json.Marshal(doc)
	if err != nil { // cannot happen for this map
		panic(err)
	}
	return b
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for n, v := range s {
		out[n] = v
	}
	return out
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("gitlabtest: uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
