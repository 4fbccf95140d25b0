// Package secret attests the Privatemode backend and keeps a fresh
// inference secret from an HPKE exchange with it.
//
// The trust chain is: the coordinator's attestation (package attest) vouches
// for its mesh CA; the secret service proves possession of a mesh leaf key by
// signing our HPKE exchange; the exported HPKE secret K is therefore known
// only to us and to code admitted by the attested coordinator. The Manager
// keeps that chain current (periodic re-attestation, rotation before expiry)
// and fails closed: when attestation fails, the secret is revoked at once.
//
// Key material never leaves this package except as the Secret value handed to
// the request path; Secret redacts its key in every printable form.
package secret

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// KeySize is the size of the inference secret K in bytes (AES-256).
const KeySize = 32

// PublicKeySize is the size of a serialized X-Wing (MLKEM768-X25519) public
// key: 1184 bytes of ML-KEM-768 plus 32 bytes of X25519.
const PublicKeySize = 1216

// EncapsulatedKeySize is the size of an X-Wing encapsulation: 1088 bytes of
// ML-KEM-768 ciphertext plus a 32-byte X25519 share.
const EncapsulatedKeySize = 1120

// Secret is one inference secret: the key K shared with the backend and the
// ID the backend files it under. It has the fields of envelope.Secret plus
// the trust metadata the proxy exposes (which manifest produced it, until
// when it may be used).
//
// A Secret is a value: copies are independent. String, GoString, LogValue and
// MarshalJSON all omit the key and truncate the ID, so logging or encoding a
// Secret by mistake never leaks it.
type Secret struct {
	// ID is std-base64(SHA-256(client public key)), 44 characters; it is sent
	// in the clear as Privatemode-Secret-ID.
	ID string
	// Key is K, the 32-byte HPKE export.
	Key [KeySize]byte
	// ExpiresAt is when the client stops using the secret. The server's lease
	// is longer (1h), so a secret is never used after the server dropped it.
	ExpiresAt time.Time
	// ManifestSHA256 is the hex SHA-256 of the coordinator manifest that was
	// attested when the secret was exchanged ("" from the Responder).
	ManifestSHA256 string
}

// ShortID returns the first 8 characters of id: enough to correlate logs,
// too little to be useful to anyone else.
func ShortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// String renders the secret without its key.
func (s Secret) String() string {
	return fmt.Sprintf("secret(id=%s, expires=%s)", ShortID(s.ID), s.ExpiresAt.Format(time.RFC3339))
}

// GoString is String, so %#v cannot print the key either.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer without the key.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", ShortID(s.ID)), slog.Time("expires_at", s.ExpiresAt))
}

// MarshalJSON encodes the secret without its key: secrets are never
// persisted or sent anywhere as JSON.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID             string    `json:"id"`
		ExpiresAt      time.Time `json:"expires_at"`
		ManifestSHA256 string    `json:"manifest_sha256,omitempty"`
	}{ShortID(s.ID), s.ExpiresAt, s.ManifestSHA256})
}

// ID derives the secret ID from the client's serialized HPKE public key:
// std-base64(SHA-256(pub)). The backend computes the same value.
func ID(pub []byte) string {
	sum := sha256.Sum256(pub)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Errors of the exchange. Each failure wraps exactly one of them, so callers
// and metrics switch with errors.Is, never on strings.
var (
	// ErrMalformedResponse: the exchange response cannot be decoded or has
	// the wrong shape (sizes, encoding).
	ErrMalformedResponse = errors.New("malformed secret exchange response")
	// ErrMeshCertUntrusted: MeshCert does not chain to the attested mesh CA.
	ErrMeshCertUntrusted = errors.New("mesh certificate not issued by the attested mesh CA")
	// ErrMeshCertExpired: MeshCert (or its chain) is outside its validity
	// period at verification time.
	ErrMeshCertExpired = errors.New("mesh certificate expired or not yet valid")
	// ErrMeshCertKey: MeshCert's key is not ECDSA.
	ErrMeshCertKey = errors.New("mesh certificate key is not ECDSA")
	// ErrSignature: the signature over SHA-256(PublicKey‖EncapsulatedKey)
	// does not verify with the mesh certificate's key, i.e. the response was
	// not produced (or was altered after being produced) by the secret
	// service.
	ErrSignature = errors.New("secret exchange signature does not verify")
	// ErrNotAttested: an exchange was attempted without an attested mesh CA.
	ErrNotAttested = errors.New("backend not attested")
)

// ErrNotReady is returned (wrapped in a *NotReadyError) by Manager.Current
// when no usable secret exists.
var ErrNotReady = errors.New("inference secret not ready")

// NotReadyError says why there is no usable secret. errors.Is(err,
// ErrNotReady) holds, and the reason stays reachable with errors.Is/As (for
// example attest.ErrMeasurement after a rejected attestation).
type NotReadyError struct {
	Reason error
}

// Error renders "inference secret not ready: <reason>".
func (e *NotReadyError) Error() string {
	if e.Reason == nil {
		return ErrNotReady.Error()
	}
	return ErrNotReady.Error() + ": " + e.Reason.Error()
}

// Is matches ErrNotReady.
func (e *NotReadyError) Is(target error) bool { return target == ErrNotReady }

// Unwrap returns the reason.
func (e *NotReadyError) Unwrap() error { return e.Reason }
