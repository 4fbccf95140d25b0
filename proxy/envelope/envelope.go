package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

const (
	nonceSize = 12
	tagSize   = 16
	maxIDLen  = 256
)

// Envelope is a parsed field envelope "ID:nonce:iv:ct".
type Envelope struct {
	// ID is the inference-secret ID (an unauthenticated key-lookup hint).
	ID string
	// Nonce is the per-exchange nonce shared by a request and its response.
	Nonce [12]byte
	// IV is the per-field AES-GCM IV.
	IV [12]byte
	// Ciphertext is the AES-GCM ciphertext followed by its 16-byte tag.
	Ciphertext []byte
}

// validID reports whether id can be embedded in an envelope: 1..256
// printable ASCII bytes without '"', '\\' or ':' so the envelope is an
// escape-free JSON string that splits into exactly four parts.
func validID(id []byte) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == ':' {
			return false
		}
	}
	return true
}

// unhex maps lower-case hex digits to their value and everything else to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
	}
	return
}()

// appendHexLower decodes strictly lower-case hex, refusing upper case so each
// envelope has exactly one accepted spelling.
func appendHexLower(dst, src []byte) ([]byte, bool) {
	if len(src)%2 != 0 {
		return dst, false
	}
	dst = slices.Grow(dst, len(src)/2)
	for i := 0; i < len(src); i += 2 {
		h, l := unhex[src[i]], unhex[src[i+1]]
		if h > 15 || l > 15 {
			return dst, false
		}
		dst = append(dst, h<<4|l)
	}
	return dst, true
}

func decode12(dst *[12]byte, src []byte) bool {
	if len(src) != 2*nonceSize {
		return false
	}
	out, ok := appendHexLower(dst[:0], src)
	return ok && len(out) == nonceSize
}

// envRef is an envelope parsed without copying: id and ctHex alias the input.
type envRef struct {
	id        []byte
	nonce, iv [12]byte
	ctHex     []byte
}

// parseEnv parses a raw JSON value that must be an envelope string literal.
func parseEnv(b []byte) (envRef, bool) {
	var e envRef
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return e, false
	}
	s := b[1 : len(b)-1]
	c1 := bytes.IndexByte(s, ':')
	if c1 < 0 {
		return e, false
	}
	e.id = s[:c1]
	rest := s[c1+1:]
	if len(rest) < 2*nonceSize*2+2 || rest[2*nonceSize] != ':' || rest[4*nonceSize+1] != ':' {
		return e, false
	}
	e.ctHex = rest[4*nonceSize+2:]
	if !validID(e.id) || !decode12(&e.nonce, rest[:2*nonceSize]) ||
		!decode12(&e.iv, rest[2*nonceSize+1:4*nonceSize+1]) ||
		len(e.ctHex) < 2*tagSize || len(e.ctHex)%2 != 0 {
		return e, false
	}
	// ct characters are checked while decoding; a stray ':' there fails too.
	return e, true
}

// ParseEnvelope strictly parses an envelope JSON string literal (quotes
// included): four ':'-separated parts, a valid ID, 12-byte nonce and IV and a
// ciphertext of at least a tag, all lower-case hex. It never panics.
func ParseEnvelope(b []byte) (Envelope, error) {
	r, ok := parseEnv(b)
	if !ok {
		return Envelope{}, ErrNotEnvelope
	}
	ct, ok := appendHexLower(nil, r.ctHex)
	if !ok {
		return Envelope{}, ErrNotEnvelope
	}
	return Envelope{ID: string(r.id), Nonce: r.nonce, IV: r.iv, Ciphertext: ct}, nil
}

// Open authenticates and decrypts e with key at sequence number seq (AAD = nonce ‖ LE32(seq)).
func (e Envelope) Open(key [32]byte, seq uint32) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	aad := makeAAD(e.Nonce, seq)
	pt, err := aead.Open(nil, e.IV[:], e.Ciphertext, aad[:])
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// Seal encrypts plaintext and returns the envelope JSON string literal
// (quotes included) "ID:nonce_hex:iv_hex:ct_hex". id must satisfy the
// envelope ID rules (printable ASCII without '"', '\\', ':'); IDs from
// NewSession are checked, Seal itself does not check.
func Seal(key [32]byte, id string, nonce, iv [12]byte, seq uint32, plaintext []byte) []byte {
	aead, err := newAEAD(key)
	if err != nil {
		panic(err) // unreachable: a 32-byte key is always valid for AES.
	}
	c := &cryptor{aead: aead, id: []byte(id)}
	c.setNonce(nonce)
	return c.appendSeal(nil, iv[:], int64(seq), plaintext, new(scratch))
}

func newAEAD(key [32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func makeAAD(nonce [12]byte, seq uint32) (aad [16]byte) {
	copy(aad[:], nonce[:])
	binary.LittleEndian.PutUint32(aad[12:], seq)
	return aad
}

// cryptor binds one key schedule, ID and nonce; it is owned by one session
// and not safe for concurrent use (aad/iv are reused to avoid heap escapes).
type cryptor struct {
	aead     cipher.AEAD
	id       []byte
	nonce    [12]byte
	nonceHex [24]byte
	aad      [16]byte
	iv       [12]byte
}

func (c *cryptor) setNonce(n [12]byte) {
	c.nonce = n
	hex.Encode(c.nonceHex[:], n[:])
	copy(c.aad[:12], n[:])
}

// sealedLen is the envelope length for a plaintext of n bytes.
func (c *cryptor) sealedLen(n int) int {
	return 2 + len(c.id) + 3 + 4*nonceSize + 2*(n+tagSize)
}

// appendSeal appends the envelope for pt at seq, staging ciphertext in sc.ct.
func (c *cryptor) appendSeal(dst, iv []byte, seq int64, pt []byte, sc *scratch) []byte {
	binary.LittleEndian.PutUint32(c.aad[12:], uint32(seq))
	copy(c.iv[:], iv)
	sc.ct = c.aead.Seal(sc.ct[:0], c.iv[:], pt, c.aad[:])
	dst = slices.Grow(dst, c.sealedLen(len(pt)))
	dst = append(dst, '"')
	dst = append(dst, c.id...)
	dst = append(dst, ':')
	dst = append(dst, c.nonceHex[:]...)
	dst = append(dst, ':')
	n := len(dst)
	dst = dst[:n+2*nonceSize]
	hex.Encode(dst[n:], c.iv[:])
	dst = append(dst, ':')
	n = len(dst)
	dst = dst[:n+2*len(sc.ct)]
	hex.Encode(dst[n:], sc.ct)
	return append(dst, '"')
}

// appendOpen authenticates e at seq and appends the plaintext to dst. On
// failure dst is returned truncated to its original length, so no
// unauthenticated byte is ever visible to the caller.
func (c *cryptor) appendOpen(dst []byte, e *envRef, seq int64, sc *scratch) ([]byte, error) {
	var ok bool
	if sc.ct, ok = appendHexLower(sc.ct[:0], e.ctHex); !ok {
		return dst, ErrNotEnvelope
	}
	binary.LittleEndian.PutUint32(c.aad[12:], uint32(seq))
	c.iv = e.iv
	start := len(dst)
	out, err := c.aead.Open(dst, c.iv[:], sc.ct, c.aad[:])
	if err != nil {
		return dst[:start], ErrDecrypt
	}
	return out, nil
}
