package envelope

import (
	"crypto/rand"
	"fmt"
	"io"
)

// Secret is an inference secret from the HPKE exchange.
type Secret struct {
	// ID is the public key-lookup hint carried in every envelope.
	ID string
	// Key is the 32-byte AES-256-GCM key K.
	Key [32]byte
}

func (s Secret) validate() error {
	if !validID([]byte(s.ID)) || s.Key == ([32]byte{}) {
		return ErrBadSecret // an all-zero key is an uninitialised secret, never a real one
	}
	return nil
}

func newCryptor(s Secret) (*cryptor, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	aead, err := newAEAD(s.Key)
	if err != nil {
		return nil, err
	}
	return &cryptor{aead: aead, id: []byte(s.ID)}, nil
}

// Session is the client half of one request/response exchange: a fresh
// random nonce, request sequence numbers from 0 and response sequence numbers
// from 0 that continue across every SSE chunk. It refuses to encrypt once
// decryption started and is unusable after any decryption error. Not safe
// for concurrent use.
type Session struct {
	x exchange
}

// NewSession starts an exchange under s with a nonce from crypto/rand.
func NewSession(s Secret) (*Session, error) { return newSessionWithRand(s, rand.Reader) }

// newSessionWithRand draws the nonce, then IVs and multipart boundaries, from r (golden tests).
func newSessionWithRand(s Secret, r io.Reader) (*Session, error) {
	c, err := newCryptor(s)
	if err != nil {
		return nil, err
	}
	var nonce [12]byte
	if _, err := io.ReadFull(r, nonce[:]); err != nil {
		return nil, fmt.Errorf("envelope: reading randomness: %w", err)
	}
	c.setNonce(nonce)
	return &Session{x: exchange{c: c, rand: r}}, nil
}

// Nonce returns the exchange nonce shared by the request and its response.
func (s *Session) Nonce() [12]byte { return s.x.c.nonce }

// Decrypted reports how many encrypted fields the response has carried so
// far: a successful answer with none is not the backend's.
func (s *Session) Decrypted() uint64 { return s.x.decSeq }

// EncryptJSON returns body (a JSON object) with every non-plain top-level
// value replaced in place by an envelope of its exact raw JSON text;
// sequence numbers follow sorted key order and continue across calls.
func (s *Session) EncryptJSON(body []byte, plain Fields) ([]byte, error) {
	return s.AppendEncryptJSON(nil, body, plain)
}

// AppendEncryptJSON is EncryptJSON appending to dst, for callers that reuse buffers.
func (s *Session) AppendEncryptJSON(dst, body []byte, plain Fields) ([]byte, error) {
	if err := s.x.checkFailed(); err != nil {
		return nil, err
	}
	if s.x.decUsed {
		return nil, ErrEncryptAfterDecrypt
	}
	return s.x.appendEncryptObject(dst, body, plain)
}

// DecryptJSON strictly decrypts a response object or one SSE chunk's JSON:
// every non-plain top-level value must be an envelope with this session's
// ID and nonce that authenticates at the next response sequence number and
// holds one JSON value, which is written back verbatim. Plain fields are
// left as they are. Any error makes the session unusable.
func (s *Session) DecryptJSON(body []byte, plain Fields) ([]byte, error) {
	return s.AppendDecryptJSON(nil, body, plain)
}

// AppendDecryptJSON is DecryptJSON appending to dst; on error dst's new bytes are not returned.
func (s *Session) AppendDecryptJSON(dst, body []byte, plain Fields) ([]byte, error) {
	return s.x.appendDecryptObject(dst, body, plain, "", nil)
}

// AppendDecryptJSONMember is AppendDecryptJSON that also returns the raw
// value of body's top-level member name (nil when there is none), found by
// the same scan, so a caller that wants one plain field (usage) does not
// read the body twice. value points into body; on error it is nil.
func (s *Session) AppendDecryptJSONMember(dst, body []byte, plain Fields, name string) (out, value []byte, err error) {
	out, err = s.x.appendDecryptObject(dst, body, plain, name, &value)
	if err != nil {
		return nil, nil, err
	}
	return out, value, nil
}
