package keys

import (
	"context"
	"crypto"
	"errors"
)

// ErrUnknownKey is returned by Key for a kid that is neither the signing
// nor the validation key.
var ErrUnknownKey = errors.New("keys: unknown key id")

// Key returns the public half of the validation key with the given kid, so
// a Store is the key source of the gateway's own tokens (auth.KeySource).
// It never does I/O.
func (s *Store) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	for _, k := range s.Validation() {
		if k.ID == kid {
			return k.Private.Public(), nil
		}
	}
	return nil, ErrUnknownKey
}

// All returns the public halves of the validation keys, signing key first,
// for tokens without a kid.
func (s *Store) All() []crypto.PublicKey {
	vs := s.Validation()
	out := make([]crypto.PublicKey, len(vs))
	for i, k := range vs {
		out[i] = k.Private.Public()
	}
	return out
}
