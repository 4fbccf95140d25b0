package envelope

import (
	"bytes"
	"fmt"
	"io"
	"slices"
)

// exchange is the state shared by the client and server halves of one
// request/response exchange. It is not safe for concurrent use; an exchange
// is processed sequentially anyway (request, then chunks in order).
type exchange struct {
	c       *cryptor // nil on the server until the first envelope binds it
	rand    io.Reader
	encSeq  uint64
	decSeq  uint64
	decUsed bool  // decryption has started (client: no more encryption)
	encUsed bool  // encryption has started (server: no more decryption)
	failed  error // first decryption error; sticky
	// sent holds the IVs of the request's envelopes (client only): a
	// response envelope reusing one is the request reflected back by a
	// relay, which would otherwise authenticate at the same sequence.
	sent map[[nonceSize]byte]struct{}
	// bind resolves the secret on the server; nil on the client.
	bind func(id []byte, nonce [12]byte) error
}

func (x *exchange) fail(err error) error {
	x.failed = err
	return err
}

func (x *exchange) checkFailed() error {
	if x.failed != nil {
		return fmt.Errorf("%w: %w", ErrSessionFailed, x.failed)
	}
	return nil
}

// readIVs fills sc.ivs with n fresh IVs in sequence order (one read per call).
func (x *exchange) readIVs(sc *scratch, n int) error {
	sc.ivs = slices.Grow(sc.ivs[:0], n*nonceSize)[:n*nonceSize]
	if _, err := io.ReadFull(x.rand, sc.ivs); err != nil {
		return fmt.Errorf("envelope: reading randomness: %w", err)
	}
	return nil
}

// appendEncryptObject replaces every non-plain top-level value of body with an
// envelope, keeping key order and all other bytes. The counter advances only
// on success.
func (x *exchange) appendEncryptObject(dst, body []byte, plain Fields) ([]byte, error) {
	sc := getScratch()
	defer putScratch(sc)
	if err := scanObject(body, sc); err != nil {
		return nil, err
	}
	if err := sc.sortMembers(); err != nil {
		return nil, err
	}
	n, err := sc.assignSeqs(plain, x.encSeq)
	if err != nil {
		return nil, err
	}
	if err := x.readIVs(sc, n); err != nil {
		return nil, err
	}
	size := len(body)
	for i := range sc.members {
		if m := &sc.members[i]; m.seq >= 0 {
			size += x.c.sealedLen(m.valEnd-m.valStart) - (m.valEnd - m.valStart)
		}
	}
	dst = slices.Grow(dst, size)
	prev := 0
	for i := range sc.members {
		m := &sc.members[i]
		if m.seq < 0 {
			continue
		}
		dst = append(dst, body[prev:m.valStart]...)
		k := int(m.seq-int64(x.encSeq)) * nonceSize
		dst = x.c.appendSeal(dst, sc.ivs[k:k+nonceSize], m.seq, body[m.valStart:m.valEnd], sc)
		x.rememberIV(sc.ivs[k : k+nonceSize])
		prev = m.valEnd
	}
	dst = append(dst, body[prev:]...)
	x.encSeq += uint64(n)
	return dst, nil
}

// rememberIV records an IV this client sealed with (servers never check).
func (x *exchange) rememberIV(iv []byte) {
	if x.bind != nil {
		return
	}
	if x.sent == nil {
		x.sent = make(map[[nonceSize]byte]struct{})
	}
	x.sent[[nonceSize]byte(iv)] = struct{}{}
}

// checkEnvelope binds (server) or verifies (client) the ID and nonce of e.
func (x *exchange) checkEnvelope(e *envRef) error {
	if x.c == nil {
		if x.bind == nil {
			return ErrForeignEnvelope
		}
		return x.bind(e.id, e.nonce)
	}
	if !bytes.Equal(e.id, x.c.id) || e.nonce != x.c.nonce {
		return ErrForeignEnvelope
	}
	return nil
}

// appendDecryptObject is the strict inverse of appendEncryptObject: every
// non-plain value must be an envelope of this exchange that authenticates at
// its sequence number and decrypts to one JSON value. Any error poisons x.
// When name is not empty, value is set to the raw value of the top-level
// member name in body (nil when there is none).
func (x *exchange) appendDecryptObject(dst, body []byte, plain Fields, name string, value *[]byte) ([]byte, error) {
	if err := x.checkFailed(); err != nil {
		return nil, err
	}
	x.decUsed = true
	sc := getScratch()
	defer putScratch(sc)
	out, err := x.decryptObject(dst, body, plain, sc, name, value)
	if err != nil {
		return nil, x.fail(err)
	}
	return out, nil
}

func (x *exchange) decryptObject(dst, body []byte, plain Fields, sc *scratch, name string, value *[]byte) ([]byte, error) {
	if err := scanObject(body, sc); err != nil {
		return nil, err
	}
	if err := sc.sortMembers(); err != nil {
		return nil, err
	}
	if name != "" {
		if m := sc.findMember(name); m != nil {
			*value = body[m.valStart:m.valEnd]
		}
	}
	n, err := sc.assignSeqs(plain, x.decSeq)
	if err != nil {
		return nil, err
	}
	if n > 0 && x.c == nil {
		// The server learns ID and nonce from the first envelope in traversal order.
		for _, idx := range sc.order {
			if m := &sc.members[idx]; m.seq >= 0 {
				e, ok := parseEnv(body[m.valStart:m.valEnd])
				if !ok {
					return nil, ErrNotEnvelope
				}
				if err := x.checkEnvelope(&e); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	// Plaintext is never larger than its envelope, so body length suffices.
	dst = slices.Grow(dst, len(body))
	prev := 0
	for i := range sc.members {
		m := &sc.members[i]
		if m.seq < 0 {
			continue
		}
		e, ok := parseEnv(body[m.valStart:m.valEnd])
		if !ok {
			return nil, ErrNotEnvelope
		}
		if err := x.checkEnvelope(&e); err != nil {
			return nil, err
		}
		if _, reflected := x.sent[e.iv]; reflected {
			return nil, ErrReflected
		}
		dst = append(dst, body[prev:m.valStart]...)
		start := len(dst)
		if dst, err = x.c.appendOpen(dst, &e, m.seq, sc); err != nil {
			return nil, err
		}
		if !validValue(dst[start:]) {
			return nil, ErrBadPlaintext
		}
		prev = m.valEnd
	}
	dst = append(dst, body[prev:]...)
	x.decSeq += uint64(n)
	return dst, nil
}
