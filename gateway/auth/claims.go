package auth

import (
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims is a validated token. Claim names follow GitLab's tokens:
// gitlab_realm, gitlab_instance_id, gitlab_instance_uid, scopes.
type Claims struct {
	Issuer   string   // iss
	Subject  string   // sub: instance UUID (GitLab token) or global user id (self-issued)
	Audience []string // aud, string or array in the token
	Realm    string   // gitlab_realm: "self-managed" or "saas"
	// InstanceID is gitlab_instance_id, or for GitLab-issued tokens (which
	// carry the instance UUID in sub) the sub, which Validate has matched
	// against X-Gitlab-Instance-Id.
	InstanceID string
	// InstanceUID is gitlab_instance_uid (CustomersDot-synced tokens), if any.
	InstanceUID string
	// GlobalUserID is sub for self-issued tokens (verified against the
	// header). For GitLab-issued tokens it is the X-Gitlab-Global-User-Id
	// header as sent by Rails: asserted by the caller, not by the token.
	GlobalUserID string
	Scopes       []string // scopes: unit primitives the instance may use
	IssuedAt     time.Time
	ExpiresAt    time.Time
	NotBefore    time.Time // zero if absent
	JTI          string
	// SelfIssued is true when iss equals the Validator's Audience (a token
	// this service minted; GitLab's "disallowed_issuers" refer to these).
	SelfIssued bool

	raw jwt.MapClaims
}

// Claim returns a raw claim of the verified token (e.g. "skip_usage_cutoff").
func (c *Claims) Claim(name string) (any, bool) {
	if c == nil {
		return nil, false
	}
	v, ok := c.raw[name]
	return v, ok
}

// HasScope reports whether the token grants unit primitive s.
func (c *Claims) HasScope(s string) bool {
	return c != nil && slices.Contains(c.Scopes, s)
}

func (c *Claims) str(name string) string {
	s, _ := c.raw[name].(string)
	return s
}

// stringClaims must be JSON strings when present.
var stringClaims = [...]string{"sub", "jti", "gitlab_realm", "gitlab_instance_id", "gitlab_instance_uid"}

// claimsFrom builds Claims from a verified MapClaims, rejecting claims of
// the wrong JSON type.
func (v *Validator) claimsFrom(mc jwt.MapClaims, r Request) (*Claims, *Error) {
	for _, name := range stringClaims {
		if x, ok := mc[name]; ok {
			if _, isStr := x.(string); !isStr {
				return nil, forbiddenToken("claim "+name+" is not a string", nil)
			}
		}
	}
	c := &Claims{raw: mc}
	c.Issuer, _ = mc["iss"].(string)
	c.Subject = c.str("sub")
	c.JTI = c.str("jti")
	c.Realm = c.str("gitlab_realm")
	c.InstanceUID = c.str("gitlab_instance_uid")
	c.SelfIssued = c.Issuer == v.audience
	c.InstanceID = c.str("gitlab_instance_id")
	if c.SelfIssued {
		c.GlobalUserID = c.Subject
	} else {
		if c.InstanceID == "" {
			c.InstanceID = c.Subject
		}
		c.GlobalUserID = r.GlobalUserID
	}
	aud, err := mc.GetAudience()
	if err != nil {
		return nil, forbiddenToken("aud has the wrong type", err)
	}
	c.Audience = aud
	if x, ok := mc["scopes"]; ok && x != nil {
		list, isList := x.([]any)
		if !isList {
			return nil, forbiddenToken("scopes is not an array", nil)
		}
		c.Scopes = make([]string, 0, len(list))
		for _, s := range list {
			str, isStr := s.(string)
			if !isStr {
				return nil, forbiddenToken("scopes has a non-string entry", nil)
			}
			c.Scopes = append(c.Scopes, str)
		}
	}
	c.ExpiresAt = numericDate(mc.GetExpirationTime())
	c.IssuedAt = numericDate(mc.GetIssuedAt())
	c.NotBefore = numericDate(mc.GetNotBefore())
	return c, nil
}

func numericDate(d *jwt.NumericDate, _ error) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.Time
}

// RequireScopes authorizes c for a route: every needed unit primitive must be
// in its scopes. The 403 message is "Unauthorized to access '<scope>'";
// routes with their own GitLab text use (*Error).WithMessage, e.g.
// "Unauthorized to access code completions".
func (v *Validator) RequireScopes(c *Claims, needed ...string) error {
	if c == nil {
		return &Error{Status: http.StatusForbidden, Message: "Unauthorized", Reason: "no claims"}
	}
	for _, s := range needed {
		if !c.HasScope(s) {
			return &Error{Status: http.StatusForbidden, Message: "Unauthorized to access '" + s + "'", Reason: "missing scope " + s}
		}
	}
	return nil
}

// RequireAnyScope authorizes c when it holds at least one of anyOf (e.g.
// user_access_token: complete_code or ai_gateway_model_provider_proxy).
func (v *Validator) RequireAnyScope(c *Claims, anyOf ...string) error {
	for _, s := range anyOf {
		if c.HasScope(s) {
			return nil
		}
	}
	first := ""
	if len(anyOf) > 0 {
		first = anyOf[0]
	}
	return &Error{Status: http.StatusForbidden, Message: "Unauthorized to access '" + first + "'", Reason: "none of the required scopes"}
}
