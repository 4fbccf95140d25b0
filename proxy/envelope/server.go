package envelope

import (
	"crypto/rand"
	"io"
)

// ServerSession is the server half of one exchange (for the sandbox
// backend): it learns ID and nonce from the first request envelope, requires
// every other envelope to match, and encrypts the response with the same ID,
// nonce and key and its own counter from 0. Not safe for concurrent use.
type ServerSession struct {
	x      exchange
	lookup func(id string) (Secret, bool)
}

// NewServerSession returns a ServerSession resolving secret IDs with lookup.
func NewServerSession(lookup func(id string) (Secret, bool)) *ServerSession {
	return newServerSessionWithRand(lookup, rand.Reader)
}

func newServerSessionWithRand(lookup func(id string) (Secret, bool), r io.Reader) *ServerSession {
	s := &ServerSession{lookup: lookup}
	s.x = exchange{rand: r, bind: s.bind}
	return s
}

// bind resolves id, failing with *UnknownSecretError when lookup misses.
func (s *ServerSession) bind(id []byte, nonce [12]byte) error {
	sec, ok := s.lookup(string(id))
	if !ok {
		return &UnknownSecretError{ID: string(id)}
	}
	sec.ID = string(id) // the envelope's spelling is what the response must carry
	c, err := newCryptor(sec)
	if err != nil {
		return err
	}
	c.setNonce(nonce)
	s.x.c = c
	return nil
}

// ID returns the bound secret ID, or "" before the first envelope was decrypted.
func (s *ServerSession) ID() string {
	if s.x.c == nil {
		return ""
	}
	return string(s.x.c.id)
}

// DecryptJSON decrypts a request object: every non-plain top-level value must
// be an envelope; the first in traversal order fixes ID and nonce (unknown ID
// → *UnknownSecretError) and all others must match. Any error makes the
// session unusable.
func (s *ServerSession) DecryptJSON(body []byte, plain Fields) ([]byte, error) {
	if s.x.encUsed {
		return nil, ErrDecryptAfterEncrypt
	}
	return s.x.appendDecryptObject(nil, body, plain, "", nil)
}

// EncryptJSON encrypts a response object or one SSE chunk with a response
// counter that continues across calls; it refuses before anything was decrypted.
func (s *ServerSession) EncryptJSON(body []byte, plain Fields) ([]byte, error) {
	return s.AppendEncryptJSON(nil, body, plain)
}

// AppendEncryptJSON is EncryptJSON appending to dst.
func (s *ServerSession) AppendEncryptJSON(dst, body []byte, plain Fields) ([]byte, error) {
	if err := s.x.checkFailed(); err != nil {
		return nil, err
	}
	if s.x.c == nil || s.x.decSeq == 0 {
		return nil, ErrNothingDecrypted
	}
	s.x.encUsed = true
	return s.x.appendEncryptObject(dst, body, plain)
}
