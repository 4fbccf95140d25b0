// Package bearer checks inbound bearer tokens against the SHA-256 digests the
// configuration holds; the proxy and the admin UI share it.
package bearer

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Tokens holds the SHA-256 digests of the bearer tokens clients may use.
// Only digests are kept, so a leaked configuration does not leak tokens.
type Tokens struct {
	digests [][sha256.Size]byte
}

// ParseDigests builds Tokens from hex SHA-256 digests; an empty list
// means inbound authentication is off.
func ParseDigests(hexDigests []string) (*Tokens, error) {
	t := &Tokens{}
	for i, h := range hexDigests {
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("inbound token digest %d: want 64 hex characters (sha256 of the token)", i)
		}
		t.digests = append(t.digests, [sha256.Size]byte(b))
	}
	return t, nil
}

// Digest returns the hex SHA-256 of token, the form configuration holds.
func Digest(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}

// Enabled reports whether any token is configured.
func (t *Tokens) Enabled() bool { return t != nil && len(t.digests) > 0 }

// Allow reports whether the Authorization header value carries a valid
// bearer token. Every digest is compared, in constant time, so timing does
// not reveal which token nearly matched.
func (t *Tokens) Allow(authorization []byte) bool {
	const prefix = "bearer "
	if len(authorization) <= len(prefix) || !bytes.EqualFold(authorization[:len(prefix)], []byte(prefix)) {
		return false
	}
	d := sha256.Sum256(bytes.TrimSpace(authorization[len(prefix):]))
	ok := 0
	for i := range t.digests {
		ok |= subtle.ConstantTimeCompare(d[:], t.digests[i][:])
	}
	return ok == 1
}
