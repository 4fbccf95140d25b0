package auth

import (
	"encoding/base64"
	"strings"

	gojson "github.com/goccy/go-json"
)

// Limits of the shape checks that run before any key lookup.
const (
	// DefaultMaxTokenBytes is the default Config.MaxTokenBytes. GitLab's
	// tokens are about 1 KiB (the scopes list dominates).
	DefaultMaxTokenBytes = 8 << 10
	// MaxKidLen is the longest kid accepted. RFC 7638 thumbprints are 43
	// characters, our own kids about 30.
	MaxKidLen = 128
	// maxHeaderSegment bounds the encoded JOSE header (GitLab's is ~100
	// bytes).
	maxHeaderSegment = 2048
	// RS256 signatures are as long as the modulus: accept 2048..8192-bit keys.
	minSigBytes = 256
	maxSigBytes = 1024
)

// algRS256 is the only accepted JWS algorithm.
const algRS256 = "RS256"

// forbiddenHeaderParams are JOSE header parameters GitLab never sends and
// that only make sense for attacks: token-supplied keys or key URLs (SSRF,
// key injection), critical extensions we do not implement, JWE parameters.
var forbiddenHeaderParams = [...]string{"crit", "jku", "jwk", "x5u", "x5c", "zip", "enc", "b64"}

var b64urlAlphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

var kidAlphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+") {
		t[c] = true
	}
	return t
}()

// joseHeader is what the pre-check extracts from the token header.
type joseHeader struct {
	kid    string
	hasKid bool
	// dot1 and dot2 are the offsets of the two dots in the token.
	dot1, dot2 int
}

// precheck validates the token's shape and JOSE header without touching any
// key: size, exactly three non-empty base64url segments, a plausible RS256
// signature length, alg RS256, typ JWT, a harmless kid, no key-carrying or
// critical header parameters. Every failure is a 401 "Forbidden by auth
// provider" with an internal reason.
func precheck(token string, maxBytes int) (joseHeader, *Error) {
	var h joseHeader
	if token == "" {
		return h, forbiddenToken("empty bearer token", nil)
	}
	if len(token) > maxBytes {
		return h, forbiddenToken("token larger than limit", nil)
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(token); i++ {
		c := token[i]
		if c == '.' {
			switch {
			case dot1 < 0:
				dot1 = i
			case dot2 < 0:
				dot2 = i
			default:
				return h, forbiddenToken("token has more than three segments", nil)
			}
			continue
		}
		if !b64urlAlphabet[c] {
			return h, forbiddenToken("token contains a non-base64url character", nil)
		}
	}
	if dot2 < 0 {
		return h, forbiddenToken("token has fewer than three segments", nil)
	}
	h.dot1, h.dot2 = dot1, dot2
	hdr, payload, sig := token[:dot1], token[dot1+1:dot2], token[dot2+1:]
	if hdr == "" || payload == "" || sig == "" {
		return h, forbiddenToken("token has an empty segment", nil)
	}
	if len(hdr)%4 == 1 || len(payload)%4 == 1 || len(sig)%4 == 1 {
		return h, forbiddenToken("token segment has an impossible base64 length", nil)
	}
	if len(hdr) > maxHeaderSegment {
		return h, forbiddenToken("token header too large", nil)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(hdr)
	if err != nil {
		return h, forbiddenToken("token header is not base64url", err)
	}
	// Decode into a map, as golang-jwt did before Validate decoded tokens
	// itself: exact key names, last duplicate wins.
	fields, err := decodeObject(raw)
	if err != nil || fields == nil {
		return h, forbiddenToken("token header is not a JSON object", err)
	}
	alg, ok := fields["alg"].(string)
	if !ok || alg != algRS256 {
		return h, forbiddenToken("alg must be RS256", nil)
	}
	for _, p := range forbiddenHeaderParams {
		if _, ok := fields[p]; ok {
			return h, forbiddenToken("header parameter "+p+" not allowed", nil)
		}
	}
	if v, ok := fields["typ"]; ok {
		typ, isStr := v.(string)
		if !isStr || !strings.EqualFold(typ, "JWT") {
			return h, forbiddenToken("typ must be JWT", nil)
		}
	}
	if n := len(sig) * 6 / 8; n < minSigBytes || n > maxSigBytes {
		return h, forbiddenToken("signature length does not fit RS256", nil)
	}
	if v, ok := fields["kid"]; ok {
		kid, isStr := v.(string)
		if !isStr || !validKid(kid) {
			return h, forbiddenToken("kid is not an acceptable key id", nil)
		}
		h.kid, h.hasKid = kid, true
	}
	return h, nil
}

// validKid accepts short printable key ids made of base64url characters,
// '.', '=' and '+': RFC 7638 thumbprints and names like
// "gitlab-ai-gateway_signing_key". No path, URL, space or control
// characters, and no leading dot.
func validKid(kid string) bool {
	if kid == "" || len(kid) > MaxKidLen || kid[0] == '.' {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if !kidAlphabet[kid[i]] {
			return false
		}
	}
	return true
}

// decodeObject decodes a JWT header or payload into a map, as golang-jwt's
// MapClaims: exact key names, last duplicate wins, numbers as float64. A
// nil map means the input was JSON null, not an object.
func decodeObject(b []byte) (map[string]any, error) {
	var m map[string]any
	err := gojson.Unmarshal(b, &m)
	return m, err
}
