package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Thumbprint returns the RFC 7638 thumbprint of a key: the unpadded
// base64url SHA-256 of its required public members. It accepts *rsa,
// *ecdsa and ed25519 public keys; for a private key it returns the
// thumbprint of its public half.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	pub, err := publicOf(pub, true)
	if err != nil {
		return "", err
	}
	k, err := jwk.Import(pub)
	if err != nil {
		return "", fmt.Errorf("jwks: thumbprint: %w", err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("jwks: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Publish returns a JWKS document ({"keys":[…]}) for the given public keys,
// in order. Each key gets kid = Thumbprint, "use":"sig" and its algorithm:
// "RS256" for RSA, "ES256"/"ES384"/"ES512" by curve for ECDSA, "EdDSA" for
// Ed25519. It refuses private keys (pass priv.Public()), RSA keys below
// MinRSABits, unsupported types and duplicates. No keys yields
// {"keys":[]}.
func Publish(keys ...crypto.PublicKey) ([]byte, error) {
	set := jwk.NewSet()
	seen := make(map[string]bool, len(keys))
	for i, pub := range keys {
		pub, err := publicOf(pub, false)
		if err != nil {
			return nil, fmt.Errorf("jwks: publish key #%d: %w", i, err)
		}
		var alg jwa.SignatureAlgorithm
		switch p := pub.(type) {
		case *rsa.PublicKey:
			alg = jwa.RS256()
		case *ecdsa.PublicKey:
			switch p.Curve {
			case elliptic.P256():
				alg = jwa.ES256()
			case elliptic.P384():
				alg = jwa.ES384()
			case elliptic.P521():
				alg = jwa.ES512()
			default:
				return nil, fmt.Errorf("jwks: publish key #%d: unsupported curve", i)
			}
		case ed25519.PublicKey:
			alg = jwa.EdDSA()
		}
		k, err := jwk.Import(pub)
		if err != nil {
			return nil, fmt.Errorf("jwks: publish key #%d: %w", i, err)
		}
		if priv, err := jwk.IsPrivateKey(k); err != nil || priv {
			return nil, fmt.Errorf("jwks: publish key #%d: %w", i, ErrPrivateKey)
		}
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("jwks: publish key #%d: %w", i, err)
		}
		kid := base64.RawURLEncoding.EncodeToString(tp)
		if seen[kid] {
			return nil, fmt.Errorf("jwks: publish key #%d: duplicate key %s", i, kid)
		}
		seen[kid] = true
		for name, v := range map[string]any{jwk.KeyIDKey: kid, jwk.KeyUsageKey: jwk.ForSignature, jwk.AlgorithmKey: alg} {
			if err := k.Set(name, v); err != nil {
				return nil, fmt.Errorf("jwks: publish key #%d: set %s: %w", i, name, err)
			}
		}
		if err := set.AddKey(k); err != nil {
			return nil, fmt.Errorf("jwks: publish key #%d: %w", i, err)
		}
	}
	if set.Len() == 0 {
		return []byte(`{"keys":[]}`), nil
	}
	return json.Marshal(set)
}

// publicOf checks the key type and size. A private key is converted to its
// public half if allowPrivate, otherwise refused.
func publicOf(key crypto.PublicKey, allowPrivate bool) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		if !allowPrivate {
			return nil, fmt.Errorf("%w: got %T; pass its Public()", ErrPrivateKey, key)
		}
		return publicOf(k.(crypto.Signer).Public(), false)
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("nil RSA key")
		}
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is shorter than %d", k.N.BitLen(), MinRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("nil ECDSA key")
		}
		return k, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("malformed Ed25519 key")
		}
		return k, nil
	case []byte:
		return nil, fmt.Errorf("%w: symmetric keys are never published", ErrPrivateKey)
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}
