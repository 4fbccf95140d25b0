package envelope

import (
	"bytes"
	"slices"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth mirrors encoding/json's nesting limit so both accept the same inputs.
const maxDepth = 10000

// member is one top-level key/value pair located by scanObject.
type member struct {
	keyStart, keyEnd int    // raw key literal including quotes
	valStart, valEnd int    // raw value text
	dk               []byte // decoded key: aliases body when unescaped, else scratch.keys
	special          bool   // dk contains '.', '?' or '*' (gjson path escaping changes its sort order)
	seq              int64  // assigned sequence number, -1 for plain fields
}

// scratch holds per-call working memory; pooled because bodies arrive at SSE rates.
type scratch struct {
	members []member
	order   []int32
	keys    []byte // decoded escaped keys
	ct      []byte // raw ciphertext / plaintext staging
	ivs     []byte
	content []byte // shard-key content
	open    int    // index of '{'
	close   int    // index of the matching '}'
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

// putScratch drops references into caller bodies and oversized buffers before pooling.
func putScratch(sc *scratch) {
	clear(sc.members)
	sc.members = sc.members[:0]
	const keep = 1 << 20
	if cap(sc.ct) > keep {
		sc.ct = nil
	}
	if cap(sc.keys) > keep {
		sc.keys = nil
	}
	if cap(sc.content) > keep {
		sc.content = nil
	}
	scratchPool.Put(sc)
}

// strPlain marks bytes that need no attention inside a JSON string.
var strPlain = func() (t [256]bool) {
	for i := 0x20; i < 256; i++ {
		t[i] = i != '"' && i != '\\'
	}
	return
}()

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// scanObject validates that b is exactly one JSON object (surrounding
// whitespace allowed) and records its top-level members in sc.members.
func scanObject(b []byte, sc *scratch) error {
	sc.members = sc.members[:0]
	sc.keys = sc.keys[:0]
	i := skipWS(b, 0)
	if i >= len(b) {
		return syntaxErr(i)
	}
	if b[i] != '{' {
		if end, err := skipValue(b, i, 1); err == nil && skipWS(b, end) == len(b) {
			return ErrNotObject
		}
		return syntaxErr(i)
	}
	sc.open = i
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		sc.close = i
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return syntaxErr(i)
		}
		ks := i
		ke, esc, err := scanString(b, i)
		if err != nil {
			return err
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return syntaxErr(i)
		}
		i = skipWS(b, i+1)
		vs := i
		ve, err := skipValue(b, i, 2)
		if err != nil {
			return err
		}
		m := member{keyStart: ks, keyEnd: ke, valStart: vs, valEnd: ve, seq: -1}
		if esc {
			m.dk = sc.decodeKey(b, ks+1, ke-1)
		} else {
			m.dk = b[ks+1 : ke-1]
		}
		m.special = bytes.ContainsAny(m.dk, ".?*")
		sc.members = append(sc.members, m)
		i = skipWS(b, ve)
		if i >= len(b) {
			return syntaxErr(i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			sc.close = i
			return trailing(b, i+1)
		default:
			return syntaxErr(i)
		}
	}
}

func trailing(b []byte, i int) error {
	if i = skipWS(b, i); i != len(b) {
		return syntaxErr(i)
	}
	return nil
}

// decodeKey unescapes a key into sc.keys. The buffer is sized to the body on
// first use so earlier member.dk slices are never invalidated by growth.
func (sc *scratch) decodeKey(b []byte, s, e int) []byte {
	if cap(sc.keys) < len(b) {
		sc.keys = make([]byte, 0, len(b))
	}
	start := len(sc.keys)
	sc.keys = appendUnescaped(sc.keys, b[s:e])
	return sc.keys[start:len(sc.keys):len(sc.keys)]
}

// scanString returns the index after the closing quote of the string at b[i]
// and whether it contains escapes. Bytes ≥0x20 are accepted as-is, like json.Valid.
func scanString(b []byte, i int) (end int, esc bool, err error) {
	j := i + 1
	for {
		for j < len(b) && strPlain[b[j]] {
			j++
		}
		if j >= len(b) {
			return 0, false, syntaxErr(j)
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, esc, nil
		case c == '\\':
			esc = true
			if j+1 >= len(b) {
				return 0, false, syntaxErr(j)
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) || hex4(b[j+2:j+6]) < 0 {
					return 0, false, syntaxErr(j)
				}
				j += 6
			default:
				return 0, false, syntaxErr(j)
			}
		default: // control character
			return 0, false, syntaxErr(j)
		}
	}
}

func hexNibble(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// hex4 decodes the 4 hex digits of a \u escape, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		n := hexNibble(c)
		if n < 0 {
			return -1
		}
		r = r<<4 | rune(n)
	}
	return r
}

// skipValue validates the JSON value at b[i] and returns the index after it.
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, syntaxErr(i)
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{' || c == '[':
		if depth > maxDepth {
			return 0, syntaxErr(i)
		}
		return skipContainer(b, i, depth)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	}
	return 0, syntaxErr(i)
}

func skipContainer(b []byte, i, depth int) (int, error) {
	obj := b[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, nil
	}
	for {
		if obj {
			if i >= len(b) || b[i] != '"' {
				return 0, syntaxErr(i)
			}
			ke, _, err := scanString(b, i)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				return 0, syntaxErr(i)
			}
			i = skipWS(b, i+1)
		}
		ve, err := skipValue(b, i, depth+1)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return 0, syntaxErr(i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case closer:
			return i + 1, nil
		default:
			return 0, syntaxErr(i)
		}
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, syntaxErr(i)
	}
	return i + len(lit), nil
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// number validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func number(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return 0, syntaxErr(i)
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, syntaxErr(j)
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, syntaxErr(j)
		}
		i = j
	}
	return i, nil
}

// validValue reports whether b is exactly one JSON value with optional surrounding whitespace.
func validValue(b []byte) bool {
	i := skipWS(b, 0)
	end, err := skipValue(b, i, 1)
	return err == nil && skipWS(b, end) == len(b)
}

// appendUnescaped decodes the inside of a validated JSON string. Escapes are
// decoded like encoding/json (lone surrogates → U+FFFD); other bytes are
// copied unchanged, as gjson does, so invalid UTF-8 keeps its identity.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(s[i+2:])); d != utf8.RuneError {
						dst = utf8.AppendRune(dst, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

// cmpKeys orders members like upstream: Go byte order of the decoded key
// after gjson path escaping (. ? * get a leading backslash).
func cmpKeys(a, b *member) int {
	if !a.special && !b.special {
		return bytes.Compare(a.dk, b.dk)
	}
	return cmpEscaped(a.dk, b.dk)
}

// escIter yields the gjson-escaped form of a key without materialising it.
type escIter struct {
	s       []byte
	i       int
	pending bool // backslash already emitted for s[i]
}

func (it *escIter) next() (byte, bool) {
	if it.i >= len(it.s) {
		return 0, false
	}
	c := it.s[it.i]
	if (c == '.' || c == '?' || c == '*') && !it.pending {
		it.pending = true
		return '\\', true
	}
	it.pending = false
	it.i++
	return c, true
}

func cmpEscaped(a, b []byte) int {
	x, y := escIter{s: a}, escIter{s: b}
	for {
		ca, oka := x.next()
		cb, okb := y.next()
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return -1
		case !okb:
			return 1
		case ca != cb:
			if ca < cb {
				return -1
			}
			return 1
		}
	}
}

// sortMembers fills sc.order with member indices in traversal order and
// rejects duplicate keys; the encoding/json and gjson views of a duplicate differ.
func (sc *scratch) sortMembers() error {
	ms := sc.members
	sc.order = sc.order[:0]
	for i := range ms {
		sc.order = append(sc.order, int32(i))
	}
	slices.SortFunc(sc.order, func(x, y int32) int { return cmpKeys(&ms[x], &ms[y]) })
	for k := 1; k < len(sc.order); k++ {
		if cmpKeys(&ms[sc.order[k-1]], &ms[sc.order[k]]) == 0 {
			return ErrDuplicateKey
		}
	}
	return nil
}

// assignSeqs numbers non-plain members from base in traversal order and returns their count.
func (sc *scratch) assignSeqs(plain Fields, base uint64) (int, error) {
	n := 0
	for _, idx := range sc.order {
		m := &sc.members[idx]
		if plain.hasBytes(m.dk) {
			m.seq = -1
			continue
		}
		m.seq = int64(base) + int64(n)
		n++
	}
	if base+uint64(n) > 1<<32 {
		return 0, ErrSequenceExhausted
	}
	return n, nil
}
