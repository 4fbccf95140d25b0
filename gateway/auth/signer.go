package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// UserAccessTokenScopes are the unit primitives a direct-access token can
// carry (GitLab's gateway: complete_code, ai_gateway_model_provider_proxy);
// the token gets the intersection with the caller's scopes.
var UserAccessTokenScopes = []string{"complete_code", "ai_gateway_model_provider_proxy"}

// DefaultUserTokenTTL is the lifetime of direct-access tokens (1 h).
const DefaultUserTokenTTL = time.Hour

// RealmSelfManaged is the gitlab_realm of Self-Managed instances.
const RealmSelfManaged = "self-managed"

// reservedClaims cannot be set through extra claims.
var reservedClaims = [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "gitlab_realm", "gitlab_instance_id", "gitlab_instance_uid", "scopes"}

// Signer mints the gateway's own tokens (AIGW_SELF_SIGNED_JWT__SIGNING_KEY,
// or DUO_WORKFLOW_SELF_SIGNED_JWT__SIGNING_KEY for DWS).
type Signer struct {
	Key      *rsa.PrivateKey
	KeyID    string // kid header; the same kid must be published in the local JWKS
	Issuer   string // iss, the service name, e.g. "gitlab-ai-gateway"
	Audience string // aud; empty means Issuer (GitLab: iss = aud = service name)
	TTL      time.Duration
	Now      func() time.Time
	// Scopes are the unit primitives a minted token may carry (the
	// caller's scopes ∩ these); nil means UserAccessTokenScopes. The Agent
	// Platform's GenerateToken passes its own primitives.
	Scopes []string
}

// UserAccessToken mints the token of POST /v1/code/user_access_token for the
// validated caller c, with the claims GitLab's gateway puts in it: iss, sub
// (the caller's global user id), aud, exp, nbf = iat = now, jti,
// gitlab_realm, gitlab_instance_id, scopes (caller's ∩
// UserAccessTokenScopes), gitlab_instance_uid for self-managed, and
// duo_seat_count if the caller had one. extra adds claims (e.g. SaaS
// namespace ids) but cannot override those. It refuses (403, "Unauthorized
// to create user access token") self-issued callers, callers without a
// usable scope and callers without a global user id; signing problems are
// 500 "Failed to generate JWT".
func (s *Signer) UserAccessToken(c *Claims, extra map[string]any) (token string, expiresAt time.Time, err error) {
	deny := func(reason string) (string, time.Time, error) {
		return "", time.Time{}, &Error{Status: http.StatusForbidden, Message: MsgUserAccessTokenForbidden, Reason: reason}
	}
	fail := func(reason string, cause error) (string, time.Time, error) {
		return "", time.Time{}, &Error{Status: http.StatusInternalServerError, Message: MsgSigningFailed, Reason: reason, cause: cause}
	}
	if c == nil {
		return deny("no caller claims")
	}
	if c.SelfIssued || (s.Issuer != "" && c.Issuer == s.Issuer) {
		return deny("caller token was issued by this gateway")
	}
	allowed := s.Scopes
	if allowed == nil {
		allowed = UserAccessTokenScopes
	}
	var scopes []string
	for _, sc := range allowed {
		if c.HasScope(sc) {
			scopes = append(scopes, sc)
		}
	}
	if len(scopes) == 0 {
		return deny("caller has none of the scopes " + strings.Join(allowed, ", "))
	}
	if c.GlobalUserID == "" {
		return deny("no global user id")
	}
	if s.Key == nil || s.Key.N == nil || s.Key.N.BitLen() < minRSABits {
		return fail("no RSA signing key of at least 2048 bits", nil)
	}
	if s.Issuer == "" {
		return fail("Signer.Issuer is empty", nil)
	}
	for k := range extra {
		if slices.Contains(reservedClaims[:], k) {
			return fail("extra claim "+k+" is reserved", nil)
		}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultUserTokenTTL
	}
	aud := s.Audience
	if aud == "" {
		aud = s.Issuer
	}
	jti, err := newUUID()
	if err != nil {
		return fail("jti", err)
	}
	iat := now().Truncate(time.Second)
	exp := iat.Add(ttl)
	mc := jwt.MapClaims{}
	for k, v := range extra {
		mc[k] = v
	}
	mc["iss"] = s.Issuer
	mc["sub"] = c.GlobalUserID
	mc["aud"] = aud
	mc["exp"] = exp.Unix()
	mc["nbf"] = iat.Unix()
	mc["iat"] = iat.Unix()
	mc["jti"] = jti
	mc["gitlab_realm"] = c.Realm
	mc["gitlab_instance_id"] = c.InstanceID
	mc["scopes"] = scopes
	if c.Realm == RealmSelfManaged {
		uid := c.InstanceUID
		if uid == "" {
			uid = c.InstanceID
		}
		mc["gitlab_instance_uid"] = uid
	}
	if seats, ok := c.Claim("duo_seat_count"); ok && seats != nil && seats != "" {
		if _, taken := mc["duo_seat_count"]; !taken {
			mc["duo_seat_count"] = seats
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, mc)
	if s.KeyID != "" {
		t.Header["kid"] = s.KeyID
	}
	token, err = t.SignedString(s.Key)
	if err != nil {
		return fail("sign", err)
	}
	return token, exp, nil
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
