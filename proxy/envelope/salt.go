package envelope

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// minCacheSaltLen is the server's minimum cache_salt length (Go len, i.e. bytes).
const minCacheSaltLen = 32

// RandomCacheSalt returns base64 (std) of 32 random bytes: 44 characters,
// used per request when prompt caching is not shared.
func RandomCacheSalt() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("envelope: reading randomness: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// findMember returns the member whose decoded key equals name, or nil.
func (sc *scratch) findMember(name string) *member {
	for i := range sc.members {
		if string(sc.members[i].dk) == name {
			return &sc.members[i]
		}
	}
	return nil
}

// cacheSaltOf validates an existing cache_salt member. Stricter than
// upstream: null, "" and non-strings are rejected instead of being replaced.
func cacheSaltOf(body []byte, m *member) (string, error) {
	raw := body[m.valStart:m.valEnd]
	if raw[0] != '"' {
		return "", ErrBadCacheSalt
	}
	s := appendUnescaped(nil, raw[1:len(raw)-1])
	if len(s) < minCacheSaltLen {
		return "", ErrBadCacheSalt
	}
	return string(s), nil
}

// CacheSalt returns the client's cache_salt if the body (a JSON object) has
// one; a present salt that is not a string of ≥32 bytes is ErrBadCacheSalt.
func CacheSalt(body []byte) (salt string, present bool, err error) {
	sc := getScratch()
	defer putScratch(sc)
	if err := scanObject(body, sc); err != nil {
		return "", false, err
	}
	if err := sc.sortMembers(); err != nil {
		return "", false, err
	}
	m := sc.findMember("cache_salt")
	if m == nil {
		return "", false, nil
	}
	salt, err = cacheSaltOf(body, m)
	return salt, err == nil, err
}

// EnsureCacheSalt appends "cache_salt":salt at the end of the object when it
// is absent (injected = true) and otherwise validates the client's salt
// (ErrBadCacheSalt when shorter than 32 characters or not a string; the
// proxy answers 400). salt itself must be valid UTF-8 of ≥32 bytes.
func EnsureCacheSalt(body []byte, salt string) (out []byte, injected bool, err error) {
	sc := getScratch()
	defer putScratch(sc)
	if err := scanObject(body, sc); err != nil {
		return nil, false, err
	}
	if err := sc.sortMembers(); err != nil {
		return nil, false, err
	}
	if m := sc.findMember("cache_salt"); m != nil {
		if _, err := cacheSaltOf(body, m); err != nil {
			return nil, false, err
		}
		return body, false, nil
	}
	if len(salt) < minCacheSaltLen || !utf8.ValidString(salt) {
		return nil, false, ErrBadCacheSalt
	}
	at := sc.open + 1
	if n := len(sc.members); n > 0 {
		at = sc.members[n-1].valEnd
	}
	out = make([]byte, 0, len(body)+len(salt)+16)
	out = append(out, body[:at]...)
	if len(sc.members) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"cache_salt":`...)
	out = appendJSONString(out, salt)
	out = append(out, body[at:]...)
	return out, true, nil
}

// appendJSONString writes s as a JSON string literal (s is valid UTF-8).
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// Shard-key block schedule (privatemode-wire.md §2), in tokens of 4 characters.
const (
	shardBlock1      = 16
	shardBoundary1   = 1024
	shardBlock2      = 128
	shardBoundary2   = 100_096
	shardBlock3      = 512
	shardMaxTokens   = 1_000_000
	shardSaltHexLen  = 16
	shardKeyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// shardFields are concatenated in this order, matching the chat template order upstream assumes.
var shardFields = [...]string{"system", "tools", "messages", "prompt", "suffix"}

// appendGJSONString appends what gjson's Result.String() yields for a raw value.
func appendGJSONString(dst, raw []byte) []byte {
	switch raw[0] {
	case '"':
		return appendUnescaped(dst, raw[1:len(raw)-1])
	case 'n':
		return dst
	case 't', 'f', '{', '[':
		return append(dst, raw...)
	}
	i := 0
	if raw[0] == '-' {
		i++
	}
	for ; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			f, _ := strconv.ParseFloat(string(raw), 64)
			return strconv.AppendFloat(dst, f, 'f', -1, 64)
		}
	}
	return append(dst, raw...)
}

// ShardKey computes the Privatemode-Shard-Key header for a chat, completions
// or messages body: hex(SHA-256(salt))[:16], then "-" and one base64-alphabet
// character per content block of system+tools+messages+prompt+suffix
// (gjson string values), chaining h = SHA-256(h ‖ block) from SHA-256(salt).
func ShardKey(salt string, body []byte) (string, error) {
	if salt == "" {
		return "", ErrBadCacheSalt
	}
	sc := getScratch()
	defer putScratch(sc)
	if err := scanObject(body, sc); err != nil {
		return "", err
	}
	if err := sc.sortMembers(); err != nil {
		return "", err
	}
	sc.content = sc.content[:0]
	for _, name := range shardFields {
		if m := sc.findMember(name); m != nil {
			sc.content = appendGJSONString(sc.content, body[m.valStart:m.valEnd])
		}
	}
	return shardKey(salt, sc.content)
}

func shardKey(salt string, content []byte) (string, error) {
	h := sha256.Sum256([]byte(salt))
	tokens := len(content) / 4
	if tokens > shardMaxTokens {
		return "", ErrShardContentTooLarge
	}
	out := make([]byte, shardSaltHexLen, 64)
	hex.Encode(out, h[:shardSaltHexLen/2])
	block := shardBlock1
	if tokens < block {
		return string(out), nil
	}
	out = append(out, '-')
	buf := make([]byte, 0, 32+shardBlock3*4)
	for i := 0; i+block <= tokens; {
		buf = append(append(buf[:0], h[:]...), content[i*4:(i+block)*4]...)
		h = sha256.Sum256(buf)
		out = append(out, shardKeyAlphabet[h[31]&0x3f])
		i += block
		switch i {
		case shardBoundary1:
			block = shardBlock2
		case shardBoundary2:
			block = shardBlock3
		}
	}
	return string(slices.Clip(out)), nil
}
