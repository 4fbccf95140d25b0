package jwks

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// MinRSABits is the smallest RSA modulus accepted, fetched or published.
const MinRSABits = 2048

// ErrPrivateKey is wrapped by errors for key sets or keys that carry
// private (or symmetric) key material.
var ErrPrivateKey = errors.New("jwks: private key material")

// privateMembers are JWK members that only private or symmetric keys carry
// (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseSet parses a fetched JWKS into a snapshot.
//
// The whole set is refused if it is not a JSON object with a "keys" array
// of objects, has more than MaxKeys entries, any entry carries private or
// symmetric key material, two entries share a kid, or no entry is usable.
// Individual entries are skipped (and reported in snapshot.skipped) when
// jwx cannot parse them (unknown kty, bad encoding, RSA below MinRSABits),
// their "use" is not "sig", or they are not signature keys (RSA, ECDSA,
// Ed25519).
func parseSet(body []byte) (*snapshot, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if top == nil {
		return nil, errors.New("invalid JWKS: not an object")
	}
	rawKeys, ok := top["keys"]
	if !ok {
		return nil, errors.New(`invalid JWKS: no "keys" member`)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(rawKeys, &entries); err != nil || entries == nil {
		return nil, errors.New(`invalid JWKS: "keys" is not an array`)
	}
	if len(entries) > MaxKeys {
		return nil, fmt.Errorf("invalid JWKS: %d keys exceeds the limit of %d", len(entries), MaxKeys)
	}

	snap := &snapshot{byKID: make(map[string]crypto.PublicKey, len(entries))}
	seen := make(map[string]bool, len(entries))
	for i, entry := range entries {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(entry, &members); err != nil || members == nil {
			return nil, fmt.Errorf("invalid JWKS: key #%d is not an object", i)
		}
		for _, m := range privateMembers {
			if _, ok := members[m]; ok {
				return nil, fmt.Errorf("%w: key #%d has member %q; refusing the whole set", ErrPrivateKey, i, m)
			}
		}
		var kid string
		if raw, ok := members["kid"]; ok {
			if err := json.Unmarshal(raw, &kid); err != nil {
				return nil, fmt.Errorf("invalid JWKS: key #%d: kid is not a string", i)
			}
		}
		if kid != "" {
			if seen[kid] {
				return nil, fmt.Errorf("invalid JWKS: duplicate kid %q", clip(kid))
			}
			seen[kid] = true
		}
		info, pub, err := parseKey(entry)
		if errors.Is(err, ErrPrivateKey) {
			return nil, fmt.Errorf("key #%d: %w; refusing the whole set", i, err)
		}
		if err != nil {
			snap.skipped = append(snap.skipped, fmt.Sprintf("key #%d (kid %q): %v", i, clip(kid), err))
			continue
		}
		if info.KID != kid { // cannot happen: jwx reads the same member
			return nil, fmt.Errorf("invalid JWKS: key #%d: kid mismatch", i)
		}
		snap.info = append(snap.info, info)
		snap.all = append(snap.all, pub)
		if kid != "" {
			snap.byKID[kid] = pub
		}
	}
	if len(snap.all) == 0 {
		return nil, fmt.Errorf("JWKS has no usable keys (%d entries, %d skipped: %v)", len(entries), len(snap.skipped), snap.skipped)
	}
	return snap, nil
}

// parseKey parses one JWK with jwx and checks it is a public signature key.
func parseKey(entry []byte) (Key, crypto.PublicKey, error) {
	k, err := jwk.ParseKey(bytes.TrimSpace(entry))
	if err != nil {
		return Key{}, nil, err
	}
	if _, ok := k.(jwk.SymmetricKey); ok {
		return Key{}, nil, fmt.Errorf("%w: symmetric key", ErrPrivateKey)
	}
	if priv, err := jwk.IsPrivateKey(k); err != nil || priv {
		return Key{}, nil, fmt.Errorf("%w: %s key is private", ErrPrivateKey, k.KeyType())
	}
	if use, ok := k.KeyUsage(); ok && use != string(jwk.ForSignature) {
		return Key{}, nil, fmt.Errorf("use is %q, not \"sig\"", use)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return Key{}, nil, fmt.Errorf("export: %w", err)
	}
	info := Key{Kty: k.KeyType().String()}
	info.KID, _ = k.KeyID()
	if alg, ok := k.Algorithm(); ok {
		info.Alg = alg.String()
	}
	info.Use, _ = k.KeyUsage()
	var pub crypto.PublicKey
	switch p := raw.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < MinRSABits {
			return Key{}, nil, fmt.Errorf("RSA key of %d bits is shorter than %d", p.N.BitLen(), MinRSABits)
		}
		info.Bits, pub = p.N.BitLen(), p
	case *ecdsa.PublicKey:
		info.Bits, pub = p.Curve.Params().BitSize, p
	case ed25519.PublicKey:
		info.Bits, pub = 256, p
	default:
		return Key{}, nil, fmt.Errorf("%s key (%T) is not a supported signature key", info.Kty, raw)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return Key{}, nil, fmt.Errorf("thumbprint: %w", err)
	}
	info.Thumbprint = base64.RawURLEncoding.EncodeToString(tp)
	return info, pub, nil
}
