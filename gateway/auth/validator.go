package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
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
	parser   *jwt.Parser
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
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{algRS256}),
		jwt.WithAudience(c.Audience),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// keyLookup carries the key-selection outcome out of the golang-jwt keyfunc.
type keyLookup struct {
	issuer string
	err    *Error
}

// Validate authenticates r. Order (cheapest first, GitLab's order where it
// is observable): Authorization present and Bearer; authentication type
// oidc; token size, shape and JOSE header; issuer from the unverified
// payload; key from that issuer's source; signature; exp/nbf/iat/aud;
// claim types; header cross-checks. Errors are *Error: 401 for anything the
// client got wrong, 503 when the issuer's keys are not loaded yet.
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

	var kl keyLookup
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, mc, func(t *jwt.Token) (any, error) {
		key, e := v.selectKey(ctx, hdr, t, &kl)
		if e != nil {
			kl.err = e
			return nil, e
		}
		return key, nil
	})
	if kl.err != nil {
		return nil, kl.err
	}
	if err != nil {
		return nil, forbiddenToken("token rejected", err)
	}
	if tok == nil || !tok.Valid || kl.issuer == "" {
		return nil, forbiddenToken("token not valid", nil)
	}
	// Re-check after verification that the signed iss is the issuer whose
	// key verified it.
	if iss, _ := mc["iss"].(string); iss != kl.issuer {
		return nil, forbiddenToken("iss changed between key selection and verification", nil)
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

// selectKey picks the verification key(s) for t from the KeySource of the
// issuer named in the (not yet verified) payload.
func (v *Validator) selectKey(ctx context.Context, hdr joseHeader, t *jwt.Token, kl *keyLookup) (any, *Error) {
	mc, ok := t.Claims.(jwt.MapClaims)
	if !ok {
		return nil, forbiddenToken("unexpected claims type", nil)
	}
	iss, ok := mc["iss"].(string)
	if !ok || iss == "" {
		return nil, forbiddenToken("iss missing or not a string", nil)
	}
	src, ok := v.issuers[iss]
	if !ok {
		return nil, forbiddenToken("iss is not a configured issuer", nil)
	}
	kl.issuer = iss
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
		return rk, nil
	}
	set := jwt.VerificationKeySet{}
	for _, k := range src.All() {
		if rk, ok := usableKey(k); ok {
			set.Keys = append(set.Keys, rk)
			if len(set.Keys) == MaxKeysWithoutKid {
				break
			}
		}
	}
	if len(set.Keys) == 0 {
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
