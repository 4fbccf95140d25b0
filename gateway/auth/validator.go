package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// KeySource yields the public keys of one issuer. The jwks package's *Set
// implements it. Key looks up a kid (it may refetch on a miss); All returns
// the current keys for tokens without kid.
type KeySource interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
	All() []crypto.PublicKey
}

// ReadyReporter may be implemented by a KeySource: when All() is empty and
// Ready() is false, a token without kid gets 503 instead of 401.
type ReadyReporter interface {
	Ready() bool
}

// Issuer is one trusted token issuer: Name is the exact iss claim (for
// GitLab the instance URL, e.g. "https://gitlab.example.com"; for our own
// tokens the service name, e.g. "gitlab-ai-gateway") and Keys its key source.
// A token is only ever verified with keys of the issuer it names.
type Issuer struct {
	Name string
	Keys KeySource
}

// Config configures a Validator.
type Config struct {
	// Audience is the service name that must appear in aud, e.g.
	// "gitlab-ai-gateway" (AIGW) or "gitlab-duo-workflow-service" (DWS).
	// Tokens whose iss equals Audience are self-issued user tokens, whose
	// sub is checked against X-Gitlab-Global-User-Id (as GitLab does).
	Audience string
	// Issuers are the trusted issuers; at least one.
	Issuers []Issuer
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway; negative means none.
	Leeway time.Duration
	// MaxTokenBytes bounds the bearer token; zero means DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// NotReadyErrors are extra KeySource errors that mean "keys not loaded
	// yet" (e.g. jwks.ErrNotReady), matched with errors.Is. ErrKeysNotReady,
	// errors implementing NotReadyReporter and context errors always count.
	NotReadyErrors []error
}

// DefaultLeeway is the default clock skew (GitLab sets nbf = iat - 5s).
const DefaultLeeway = 30 * time.Second

// MaxKeysWithoutKid bounds how many keys a token without kid is tried
// against.
const MaxKeysWithoutKid = 16

// minRSABits is the smallest RSA key accepted from a KeySource.
const minRSABits = 2048

// Validator validates bearer tokens and GitLab headers. It is safe for
// concurrent use.
type Validator struct {
	audience string
	issuers  map[string]KeySource
	maxBytes int
	notReady []error
	// claims checks exp, nbf, iat and aud: golang-jwt's own validator,
	// with the options its parser was given before Validate decoded and
	// verified tokens itself (see Validate).
	claims *jwt.Validator
}

// NewValidator checks c and returns a Validator.
func NewValidator(c Config) (*Validator, error) {
	if strings.TrimSpace(c.Audience) == "" {
		return nil, errors.New("auth: Config.Audience is required")
	}
	if len(c.Issuers) == 0 {
		return nil, errors.New("auth: Config.Issuers needs at least one issuer")
	}
	v := &Validator{
		audience: c.Audience,
		issuers:  make(map[string]KeySource, len(c.Issuers)),
		maxBytes: c.MaxTokenBytes,
		notReady: c.NotReadyErrors,
	}
	for i, is := range c.Issuers {
		if is.Name == "" || is.Keys == nil {
			return nil, fmt.Errorf("auth: Config.Issuers[%d] needs Name and Keys", i)
		}
		if _, dup := v.issuers[is.Name]; dup {
			return nil, fmt.Errorf("auth: issuer %q configured twice", is.Name)
		}
		v.issuers[is.Name] = is.Keys
	}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}
	leeway := c.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	} else if leeway < 0 {
		leeway = 0
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	v.claims = jwt.NewValidator(
		jwt.WithAudience(c.Audience),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
	)
	return v, nil
}

// b64 decodes token segments: unpadded base64url, strict (no non-zero
// trailing bits), as golang-jwt's parser with WithStrictDecoding.
var b64 = base64.RawURLEncoding.Strict()

// Validate authenticates r. Order (cheapest first, GitLab's order where it
// is observable): Authorization present and Bearer; authentication type
// oidc; token size, shape and JOSE header; payload; issuer from the
// unverified payload; key from that issuer's source; signature;
// exp/nbf/iat/aud; claim types; header cross-checks. Errors are *Error: 401
// for anything the client got wrong, 503 when the issuer's keys are not
// loaded yet.
//
// Validate does what golang-jwt's Parser.ParseWithClaims did for it
// (strict base64url, header and payload JSON, RS256 only, key lookup,
// signature, then jwt.Validator for the registered claims), but decodes
// each segment once: the parser decoded the header a second time after
// precheck and wrapped everything in a jwt.Token. The same payload map is
// used to select the key and, once the signature over it has verified, as
// the claims, so the issuer that chose the key is the signed issuer.
func (v *Validator) Validate(ctx context.Context, r Request) (*Claims, error) {
	token, e := bearerToken(r.Authorization)
	if e != nil {
		return nil, e
	}
	if r.AuthenticationType != AuthTypeOIDC {
		return nil, unauthorized(MsgInvalidAuthType, "")
	}
	hdr, e := precheck(token, v.maxBytes)
	if e != nil {
		return nil, e
	}
	signed, sigSeg := token[:hdr.dot2], token[hdr.dot2+1:]
	payload, err := b64.DecodeString(token[hdr.dot1+1 : hdr.dot2])
	if err != nil {
		return nil, forbiddenToken("token payload is not base64url", err)
	}
	// A map, as golang-jwt's MapClaims: exact claim names, last duplicate
	// wins, numbers as float64.
	obj, err := decodeObject(payload)
	if err != nil || obj == nil {
		return nil, forbiddenToken("token payload is not a JSON object", err)
	}
	mc := jwt.MapClaims(obj)
	sig, err := b64.DecodeString(sigSeg)
	if err != nil {
		return nil, forbiddenToken("token signature is not base64url", err)
	}
	keys, e := v.selectKey(ctx, hdr, mc)
	if e != nil {
		return nil, e
	}
	// RS256 with golang-jwt's signing method; without kid, any of the
	// issuer's keys may have signed.
	err = errors.New("no key")
	for _, k := range keys {
		if err = jwt.SigningMethodRS256.Verify(signed, sig, k); err == nil {
			break
		}
	}
	if err != nil {
		return nil, forbiddenToken("token rejected: signature invalid", err)
	}
	if err := v.claims.Validate(mc); err != nil {
		return nil, forbiddenToken("token rejected: invalid claims", err)
	}
	c, e := v.claimsFrom(mc, r)
	if e != nil {
		return nil, e
	}
	if e := v.crossCheck(c, r); e != nil {
		return nil, e
	}
	return c, nil
}

// selectKey picks the verification key(s) from the KeySource of the issuer
// named in the (not yet verified) payload mc: the kid's key, or without
// kid up to MaxKeysWithoutKid usable keys.
func (v *Validator) selectKey(ctx context.Context, hdr joseHeader, mc jwt.MapClaims) ([]*rsa.PublicKey, *Error) {
	iss, ok := mc["iss"].(string)
	if !ok || iss == "" {
		return nil, forbiddenToken("iss missing or not a string", nil)
	}
	src, ok := v.issuers[iss]
	if !ok {
		return nil, forbiddenToken("iss is not a configured issuer", nil)
	}
	if hdr.hasKid {
		k, err := src.Key(ctx, hdr.kid)
		if err != nil {
			if v.isNotReady(err) {
				return nil, notReady("keys of issuer "+iss+" not loaded", err)
			}
			return nil, forbiddenToken("kid not found for issuer "+iss, err)
		}
		rk, ok := usableKey(k)
		if !ok {
			return nil, forbiddenToken("key for kid is not an RSA key of at least 2048 bits", nil)
		}
		return []*rsa.PublicKey{rk}, nil
	}
	var set []*rsa.PublicKey
	for _, k := range src.All() {
		if rk, ok := usableKey(k); ok {
			set = append(set, rk)
			if len(set) == MaxKeysWithoutKid {
				break
			}
		}
	}
	if len(set) == 0 {
		if rr, ok := src.(ReadyReporter); ok && !rr.Ready() {
			return nil, notReady("keys of issuer "+iss+" not loaded", nil)
		}
		return nil, forbiddenToken("issuer "+iss+" has no usable keys", nil)
	}
	return set, nil
}

// usableKey accepts RSA public keys of at least 2048 bits.
func usableKey(k crypto.PublicKey) (*rsa.PublicKey, bool) {
	rk, ok := k.(*rsa.PublicKey)
	if !ok || rk == nil || rk.N == nil || rk.N.BitLen() < minRSABits {
		return nil, false
	}
	return rk, true
}

func (v *Validator) isNotReady(err error) bool {
	if errors.Is(err, ErrKeysNotReady) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var nr NotReadyReporter
	if errors.As(err, &nr) && nr.NotReady() {
		return true
	}
	for _, s := range v.notReady {
		if s != nil && errors.Is(err, s) {
			return true
		}
	}
	return false
}

// crossCheck enforces GitLab's claim/header bindings, each only when the
// claim is non-empty, in GitLab's order.
func (v *Validator) crossCheck(c *Claims, r Request) *Error {
	if c.Realm != "" && c.Realm != r.Realm {
		return headerMismatch(HeaderRealm)
	}
	if id := c.str("gitlab_instance_id"); id != "" && id != r.InstanceID {
		return headerMismatch(HeaderInstanceID)
	}
	if c.Subject != "" {
		if c.SelfIssued {
			if c.Subject != r.GlobalUserID {
				return headerMismatch(HeaderGlobalUserID)
			}
		} else if c.Subject != r.InstanceID {
			return headerMismatch(HeaderInstanceID)
		}
	}
	return nil
}
