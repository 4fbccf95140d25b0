package receipts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"time"
)

// appendReceiptJSON appends r (its Hash left out) as encoding/json would
// marshal it, byte for byte, without reflection or allocation. Values the
// fast path does not cover (a string with anything but printable ASCII
// that JSON leaves unescaped, a year outside 0–9999) go through
// json.Marshal, so the output is always exactly json.Marshal's.
func appendReceiptJSON(buf []byte, r *Receipt) ([]byte, error) {
	if !plainReceipt(r) {
		c := *r
		c.Hash = ""
		b, err := json.Marshal(&c)
		if err != nil {
			return buf, fmt.Errorf("encode receipt: %w", err)
		}
		return append(buf, b...), nil
	}
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, r.Seq, 10)
	buf = append(buf, `,"t":"`...)
	buf = r.Time.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","route":"`...)
	buf = append(buf, r.Route...)
	buf = append(buf, '"')
	buf = appendOptString(buf, `,"feature":"`, r.Feature)
	buf = appendOptString(buf, `,"workflow":"`, r.Workflow)
	buf = appendOptString(buf, `,"instance":"`, r.Instance)
	buf = appendOptString(buf, `,"user":"`, r.UserHash)
	buf = appendOptString(buf, `,"model":"`, r.Model)
	buf = append(buf, `,"status":`...)
	buf = strconv.AppendInt(buf, int64(r.Status), 10)
	buf = appendOptString(buf, `,"outcome":"`, r.Outcome)
	buf = appendOptInt(buf, `,"in":`, int64(r.InTokens))
	buf = appendOptInt(buf, `,"out":`, int64(r.OutTokens))
	buf = appendOptInt(buf, `,"ms":`, r.Millis)
	buf = appendOptString(buf, `,"req":"`, r.RequestSHA256)
	buf = appendOptString(buf, `,"resp":"`, r.ResponseSHA256)
	buf = appendOptString(buf, `,"secret":"`, r.SecretID)
	if r.Trust != nil {
		buf = append(buf, `,"trust":{"seq":`...)
		buf = strconv.AppendInt(buf, int64(r.Trust.Seq), 10)
		buf = append(buf, `,"h":"`...)
		buf = append(buf, r.Trust.Hash...)
		buf = append(buf, `"}`...)
	}
	return append(buf, '}'), nil
}

func appendOptString(buf []byte, key, v string) []byte {
	if v == "" {
		return buf
	}
	buf = append(buf, key...)
	buf = append(buf, v...)
	return append(buf, '"')
}

func appendOptInt(buf []byte, key string, v int64) []byte {
	if v == 0 {
		return buf
	}
	return strconv.AppendInt(append(buf, key...), v, 10)
}

// plainReceipt reports whether every string of r is one encoding/json
// copies unchanged and its time is one json marshals.
func plainReceipt(r *Receipt) bool {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return false
	}
	for _, s := range [...]string{r.Route, r.Feature, r.Workflow, r.Instance, r.UserHash, r.Model,
		r.Outcome, r.RequestSHA256, r.ResponseSHA256, r.SecretID} {
		if !plainString(s) {
			return false
		}
	}
	return r.Trust == nil || plainString(r.Trust.Hash)
}

// plainString: printable ASCII without '"', '\\' and the characters
// encoding/json escapes for HTML ('<', '>', '&').
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// chainHasher computes chain hashes with one reused SHA-256 state (the
// writer goroutine's).
type chainHasher struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// next is chainHash(prev, body).
func (c *chainHasher) next(prev string, body []byte) string {
	if c.h == nil {
		c.h = sha256.New()
	}
	c.h.Reset()
	c.h.Write(chainTag)
	c.h.Write([]byte(prev))
	c.h.Write([]byte{'\n'})
	c.h.Write(body)
	return Digest([32]byte(c.h.Sum(c.sum[:0])))
}

// userHasher is HashUser with the key's HMAC state and the fixed prefix
// computed once: each hash clones that state.
type userHasher struct {
	keyed hash.Hash // after the prefix; never written again
	key   []byte
}

func newUserHasher(key []byte) *userHasher {
	m := hmac.New(sha256.New, key)
	m.Reset() // keeps the padded keys' hash states, so a clone's Sum starts from them
	m.Write([]byte(userHashTag))
	return &userHasher{keyed: m, key: key}
}

// hash is HashUser(key, instance, user).
func (u *userHasher) hash(instance, user string) string {
	if user == "" {
		return ""
	}
	c, ok := u.keyed.(hash.Cloner)
	if !ok {
		return HashUser(u.key, instance, user)
	}
	cl, err := c.Clone()
	if err != nil {
		return HashUser(u.key, instance, user)
	}
	m := cl.(hash.Hash)
	m.Write([]byte(instance))
	m.Write([]byte{0})
	m.Write([]byte(user))
	var sum [sha256.Size]byte
	return b64.EncodeToString(m.Sum(sum[:0])[:12])
}
