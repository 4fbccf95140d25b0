package envelope

import (
	"errors"
	"fmt"
)

// Sentinel errors. Messages never contain plaintext, ciphertext or keys.
var (
	// ErrInvalidJSON means the body is not syntactically valid JSON (or has trailing data).
	ErrInvalidJSON = errors.New("envelope: invalid JSON")
	// ErrNotObject means the body is valid JSON but not an object.
	ErrNotObject = errors.New("envelope: JSON body is not an object")
	// ErrDuplicateKey means a top-level key occurs twice; rejected because gjson and encoding/json disagree on which wins.
	ErrDuplicateKey = errors.New("envelope: duplicate top-level key")
	// ErrNotEnvelope means a value that must be encrypted is not a well-formed envelope string.
	ErrNotEnvelope = errors.New("envelope: value is not a well-formed envelope")
	// ErrForeignEnvelope means an envelope carries a different secret ID or nonce than this exchange.
	ErrForeignEnvelope = errors.New("envelope: envelope belongs to another exchange")
	// ErrDecrypt means AES-GCM authentication failed (wrong key, nonce, sequence or tampering).
	ErrDecrypt = errors.New("envelope: authentication failed")
	// ErrBadPlaintext means an authenticated plaintext is not a single JSON value.
	ErrBadPlaintext = errors.New("envelope: decrypted value is not valid JSON")
	// ErrUnknownSecret means the server has no secret for an envelope's ID; see UnknownSecretError.
	ErrUnknownSecret = errors.New("envelope: unknown secret ID")
	// ErrBadSecret means a Secret has an unusable ID or an all-zero key.
	ErrBadSecret = errors.New("envelope: invalid secret")
	// ErrEncryptAfterDecrypt means a client Session was asked to encrypt after it started decrypting.
	ErrEncryptAfterDecrypt = errors.New("envelope: encrypt after decrypt")
	// ErrDecryptAfterEncrypt means a ServerSession was asked to decrypt after it started encrypting.
	ErrDecryptAfterEncrypt = errors.New("envelope: decrypt after encrypt")
	// ErrNothingDecrypted means a ServerSession cannot encrypt because no request envelope bound it to a secret.
	ErrNothingDecrypted = errors.New("envelope: no request field was decrypted")
	// ErrSessionFailed wraps the first decryption error; a session is unusable after it.
	ErrSessionFailed = errors.New("envelope: session failed earlier")
	// ErrSequenceExhausted means the 32-bit sequence counter would wrap.
	ErrSequenceExhausted = errors.New("envelope: sequence number exhausted")
	// ErrBadCacheSalt means a cache_salt is not a string of at least 32 bytes.
	ErrBadCacheSalt = errors.New("envelope: cache_salt must be a string of at least 32 characters")
	// ErrShardContentTooLarge means the shard-key content exceeds ~1M tokens.
	ErrShardContentTooLarge = errors.New("envelope: shard-key content too large")
	// ErrReflected means a response envelope reuses an IV of the request: a
	// relay sent the request's own ciphertext back as the answer.
	ErrReflected = errors.New("envelope: response reflects a request envelope")
	// ErrPlainFile means a multipart file part has a plain-listed field name
	// (it would go upstream unencrypted).
	ErrPlainFile = errors.New("envelope: a file part uses a field name that is sent in plaintext")
	// ErrDuplicateField means a plain-listed multipart field occurs twice.
	ErrDuplicateField = errors.New("envelope: a plaintext form field occurs more than once")
	// ErrMultipart means a multipart body cannot be parsed or has too many parts.
	ErrMultipart = errors.New("envelope: malformed multipart body")
)

// UnknownSecretError reports the secret ID the server could not resolve; errors.Is(err, ErrUnknownSecret) holds.
type UnknownSecretError struct {
	// ID is the unresolved secret ID (a public lookup hint, not key material).
	ID string
}

// Error returns the upstream-compatible text `no secret for ID "<id>"` that clients match to re-exchange.
func (e *UnknownSecretError) Error() string { return fmt.Sprintf("no secret for ID %q", e.ID) }

// Is makes errors.Is(err, ErrUnknownSecret) true.
func (e *UnknownSecretError) Is(target error) bool { return target == ErrUnknownSecret }

func syntaxErr(off int) error { return fmt.Errorf("%w at offset %d", ErrInvalidJSON, off) }
