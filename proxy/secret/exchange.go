package secret

import (
	"context"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// The HPKE suite of the exchange (base mode, empty info): X-Wing KEM,
// HKDF-SHA256, export-only AEAD. K is Export("", 32).
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ExportOnly()
)

// Exchanger performs the secret-exchange request (the API Client, or a fake
// in tests).
type Exchanger interface {
	ExchangeSecret(ctx context.Context, pub []byte) (*ExchangeResponse, error)
}

// Exchange performs one secret exchange: a fresh X-Wing key pair, the
// request through ex, and Verify against the attested mesh CA at now. The
// returned Secret has ID and Key set; the caller sets ExpiresAt and
// ManifestSHA256.
//
// The HPKE private key lives only for this call. crypto/hpke keys are opaque
// and cannot be wiped; it is dropped as soon as K is derived.
func Exchange(ctx context.Context, ex Exchanger, meshCA *x509.Certificate, now time.Time) (Secret, error) {
	if meshCA == nil {
		return Secret{}, ErrNotAttested
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return Secret{}, fmt.Errorf("generate X-Wing key: %w", err)
	}
	pub := priv.PublicKey().Bytes()
	resp, err := ex.ExchangeSecret(ctx, pub)
	if err != nil {
		return Secret{}, err
	}
	return Verify(pub, priv, resp, meshCA, now)
}

// Verify checks an exchange response and derives the secret. In order:
// MeshCert (DER) chains to meshCA at now with the ServerAuth usage (no
// hostname: the leaf is identified by its issuer, not a name); its key is
// ECDSA; Signature is an ASN.1 ECDSA signature by that key over
// SHA-256(pub‖EncapsulatedKey); then K = HPKE Export("", 32) for enc and
// priv. Each failure wraps one of the package's Err* sentinels.
func Verify(pub []byte, priv hpke.PrivateKey, resp *ExchangeResponse, meshCA *x509.Certificate, now time.Time) (Secret, error) {
	if meshCA == nil {
		return Secret{}, ErrNotAttested
	}
	if resp == nil || len(resp.EncapsulatedKey) != EncapsulatedKeySize || len(resp.Signature) == 0 || len(resp.MeshCert) == 0 {
		return Secret{}, fmt.Errorf("%w: missing or mis-sized fields", ErrMalformedResponse)
	}
	leaf, err := x509.ParseCertificate(resp.MeshCert)
	if err != nil {
		return Secret{}, fmt.Errorf("%w: MeshCert: %w", ErrMalformedResponse, err)
	}
	if err := verifyMeshCert(leaf, meshCA, now); err != nil {
		return Secret{}, err
	}
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return Secret{}, fmt.Errorf("%w: %T", ErrMeshCertKey, leaf.PublicKey)
	}
	if !ecdsa.VerifyASN1(key, signedDigest(pub, resp.EncapsulatedKey), resp.Signature) {
		return Secret{}, ErrSignature
	}
	r, err := hpke.NewRecipient(resp.EncapsulatedKey, priv, kdf, aead, nil)
	if err != nil {
		return Secret{}, fmt.Errorf("%w: decapsulate: %w", ErrMalformedResponse, err)
	}
	k, err := r.Export("", KeySize)
	if err != nil {
		return Secret{}, fmt.Errorf("hpke export: %w", err)
	}
	s := Secret{ID: ID(pub)}
	copy(s.Key[:], k)
	clear(k)
	return s, nil
}

// verifyMeshCert verifies leaf against meshCA only: the system roots play no
// part, and expiry is reported apart from an untrusted issuer because the
// fix differs (clock or rotation vs. a backend we must not trust).
func verifyMeshCert(leaf, meshCA *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(meshCA)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now})
	if err == nil {
		return nil
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ci.Reason == x509.Expired {
		return fmt.Errorf("%w: %w", ErrMeshCertExpired, err)
	}
	return fmt.Errorf("%w: %w", ErrMeshCertUntrusted, err)
}

// signedDigest is what the secret service signs: SHA-256(pub‖enc). The
// 32-byte digest is the ECDSA hash input.
func signedDigest(pub, enc []byte) []byte {
	h := sha256.New()
	h.Write(pub)
	h.Write(enc)
	return h.Sum(nil)
}
