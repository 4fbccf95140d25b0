package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func roundTrip(t *testing.T, req []byte, reqPlain Fields, resps [][]byte, respPlain Fields) {
	t.Helper()
	c, srv := newPair(t)
	wire, err := c.EncryptJSON(req, reqPlain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := srv.DecryptJSON(wire, reqPlain)
	if err != nil || !bytes.Equal(got, req) {
		t.Fatalf("request round trip: %s %v", got, err)
	}
	for i, resp := range resps {
		enc, err := srv.EncryptJSON(resp, respPlain)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := c.DecryptJSON(enc, respPlain)
		if err != nil || !bytes.Equal(dec, resp) {
			t.Fatalf("response %d: %s %v", i, dec, err)
		}
	}
}

func TestRoundTripRoutes(t *testing.T) {
	roundTrip(t,
		[]byte(`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"h\u00e9 \"q\" 😀"}],"tools":[{"type":"function"}],"temperature":0.2,"stream":true,"stream_options":{"include_usage":true},"x-unknown":{"a":[1,2,{"b":null}]},"cache_salt":"0123456789abcdef0123456789abcdef"}`),
		ChatRequestPlain,
		[][]byte{[]byte(`{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)},
		ChatResponsePlain)
	roundTrip(t,
		[]byte(`{"model":"claude","max_tokens":10,"system":"s","messages":[{"role":"user","content":"hi"}],"stream":false,"cache_salt":"0123456789abcdef0123456789abcdef"}`),
		MessagesRequestPlain,
		[][]byte{[]byte(`{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":1}}`)},
		MessagesResponsePlain)
	roundTrip(t,
		[]byte(`{"model":"qwen3-embedding-4b","input":["a","b"],"dimensions":8,"encoding_format":"float"}`),
		EmbeddingsRequestPlain,
		[][]byte{[]byte(`{"id":"e","object":"list","data":[{"embedding":[0.1,-2e-3,1E+5],"index":0}],"model":"q","usage":{"total_tokens":2}}`)},
		EmbeddingsResponsePlain)
}

func TestEncryptKeepsLayout(t *testing.T) {
	c, srv := newPair(t)
	body := []byte(" {\n  \"model\" : \"m\",\n  \"z\" :  [ 1 , 2 ] ,\"a\":\t-0.5e10 }\n")
	wire, err := c.EncryptJSON(body, ChatRequestPlain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(wire, []byte(" {\n  \"model\" : \"m\",\n  \"z\" :  \"")) || !bytes.HasSuffix(wire, []byte("\" }\n")) {
		t.Fatalf("layout changed: %s", wire)
	}
	// Plaintext is the exact raw text, whitespace inside values included.
	e, _ := ParseEnvelope(rawField(t, wire, "z"))
	if pt, err := e.Open(vecKey, 1); err != nil || string(pt) != "[ 1 , 2 ]" {
		t.Fatalf("z at seq 1: %q %v", pt, err)
	}
	if got, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("%q %v", got, err)
	}
}

func TestSSEContinuingCounter(t *testing.T) {
	c, srv := newPair(t)
	wire, _ := c.EncryptJSON([]byte(`{"model":"m","messages":[],"stream":true}`), ChatRequestPlain)
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil {
		t.Fatal(err)
	}
	var chunks, plain [][]byte
	for i := range 100 {
		p := fmt.Appendf(nil, `{"id":"c","object":"chat.completion.chunk","created":%d,"model":"m","choices":[{"index":0,"delta":{"content":"t%d"},"finish_reason":null}]}`, i, i)
		enc, err := srv.EncryptJSON(p, ChatResponsePlain)
		if err != nil {
			t.Fatal(err)
		}
		plain, chunks = append(plain, p), append(chunks, enc)
	}
	// Chunk i carries seqs 4i..4i+3 (choices, created, model, object).
	e, _ := ParseEnvelope(rawField(t, chunks[99], "object"))
	if _, err := e.Open(vecKey, 4*99+3); err != nil {
		t.Fatal("chunk 99 'object' is not at seq 399")
	}
	dec := func(order ...int) error {
		cl := &Session{x: c.x} // same nonce/key, fresh response counter
		cl.x.decSeq, cl.x.decUsed, cl.x.failed = 0, false, nil
		for _, i := range order {
			got, err := cl.DecryptJSON(chunks[i], ChatResponsePlain)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, plain[i]) {
				t.Fatalf("chunk %d mismatch", i)
			}
		}
		return nil
	}
	all := make([]int, 100)
	for i := range all {
		all[i] = i
	}
	if err := dec(all...); err != nil {
		t.Fatal(err)
	}
	for name, order := range map[string][]int{
		"reordered":  {0, 1, 3, 2},
		"dropped":    {0, 1, 3},
		"duplicated": {0, 1, 1},
		"late start": {5},
	} {
		if err := dec(order...); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestStrictDecrypt(t *testing.T) {
	c, srv := newPair(t)
	wire, _ := c.EncryptJSON([]byte(`{"model":"m","messages":[]}`), ChatRequestPlain)
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil {
		t.Fatal(err)
	}
	good, _ := srv.EncryptJSON([]byte(`{"id":"x","choices":[],"created":1}`), ChatResponsePlain)
	other, _ := NewSession(testSecret) // same key, different nonce
	otherWire, _ := other.EncryptJSON([]byte(`{"choices":[]}`), nil)
	foreignID, _ := NewSession(Secret{ID: "other-id", Key: vecKey})
	foreignWire, _ := foreignID.EncryptJSON([]byte(`{"choices":[]}`), nil)
	wrongKey := Seal([32]byte{1}, vecID, c.Nonce(), [12]byte{}, 0, []byte(`[]`))
	cases := map[string]struct {
		body string
		want error
	}{
		"plaintext in non-plain": {`{"id":"x","choices":[]}`, ErrNotEnvelope},
		"number in non-plain":    {`{"created":1}`, ErrNotEnvelope},
		"escaped envelope":       {strings.Replace(string(good), "/", `\/`, 1), ErrNotEnvelope},
		"foreign nonce":          {string(otherWire), ErrForeignEnvelope},
		"foreign ID":             {string(foreignWire), ErrForeignEnvelope},
		"wrong key":              {`{"choices":` + string(wrongKey) + `}`, ErrDecrypt},
		"wrong seq":              {`{"b":` + string(rawField(t, good, "created")) + `}`, ErrDecrypt},
		"not an object":          {`[1]`, ErrNotObject},
		"string body":            {`"x"`, ErrNotObject},
		"trailing data":          {`{} {}`, ErrInvalidJSON},
		"empty":                  {``, ErrInvalidJSON},
		"duplicate key":          {`{"id":"a","id":"b"}`, ErrDuplicateKey},
		"duplicate escaped key":  {`{"id":"a","\u0069d":"b"}`, ErrDuplicateKey},
	}
	for name, tc := range cases {
		fresh := &Session{x: exchange{c: c.x.c, rand: c.x.rand}}
		if _, err := fresh.DecryptJSON([]byte(tc.body), ChatResponsePlain); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v want %v", name, err, tc.want)
		}
		// The first error poisons the session, even for a good chunk afterwards.
		if _, err := fresh.DecryptJSON(good, ChatResponsePlain); !errors.Is(err, ErrSessionFailed) || !errors.Is(err, tc.want) {
			t.Errorf("%s: session not poisoned: %v", name, err)
		}
	}
	if got, err := c.DecryptJSON(good, ChatResponsePlain); err != nil || string(got) != `{"id":"x","choices":[],"created":1}` {
		t.Fatal(got, err)
	}
	if _, err := c.EncryptJSON([]byte(`{}`), nil); !errors.Is(err, ErrEncryptAfterDecrypt) {
		t.Fatal("encrypt after decrypt:", err)
	}
}

func TestDecryptRejectsNonJSONPlaintext(t *testing.T) {
	c, _ := newPair(t)
	env := Seal(vecKey, vecID, c.Nonce(), [12]byte{}, 0, []byte(`{"a":`))
	if _, err := c.DecryptJSON([]byte(`{"choices":`+string(env)+`}`), ChatResponsePlain); !errors.Is(err, ErrBadPlaintext) {
		t.Fatal(err)
	}
}

func TestServerSession(t *testing.T) {
	c, _ := newPair(t)
	wire, _ := c.EncryptJSON([]byte(`{"model":"m","messages":[]}`), ChatRequestPlain)
	srv := NewServerSession(lookupFor())
	_, err := srv.DecryptJSON(wire, ChatRequestPlain)
	var use *UnknownSecretError
	if !errors.Is(err, ErrUnknownSecret) || !errors.As(err, &use) || use.ID != vecID ||
		err.Error() != `no secret for ID "`+vecID+`"` {
		t.Fatalf("unknown secret: %v", err)
	}
	srv = NewServerSession(lookupFor(testSecret))
	if _, err := srv.EncryptJSON([]byte(`{"choices":[]}`), ChatResponsePlain); !errors.Is(err, ErrNothingDecrypted) {
		t.Fatal("encrypt before decrypt:", err)
	}
	if _, err := srv.DecryptJSON([]byte(`{"model":"m"}`), ChatRequestPlain); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.EncryptJSON([]byte(`{"choices":[]}`), ChatResponsePlain); !errors.Is(err, ErrNothingDecrypted) {
		t.Fatal("encrypt with zero decrypted fields:", err)
	}
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil || srv.ID() != vecID {
		t.Fatal(err, srv.ID())
	}
	if _, err := srv.EncryptJSON([]byte(`{"choices":[]}`), ChatResponsePlain); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); !errors.Is(err, ErrDecryptAfterEncrypt) {
		t.Fatal("decrypt after encrypt:", err)
	}
	// Mixed IDs in one request are refused even when both are known.
	second := Secret{ID: "second", Key: [32]byte{9}}
	c2, _ := NewSession(second)
	w2, _ := c2.EncryptJSON([]byte(`{"b":1}`), nil)
	mixed := append(append([]byte(`{"a":`), rawField(t, wire, "messages")...), `,"b":`...)
	mixed = append(append(mixed, rawField(t, w2, "b")...), '}')
	srv = NewServerSession(lookupFor(testSecret, second))
	if _, err := srv.DecryptJSON(mixed, nil); !errors.Is(err, ErrForeignEnvelope) {
		t.Fatal("mixed IDs:", err)
	}
}

func TestBadSecrets(t *testing.T) {
	for _, s := range []Secret{{ID: "", Key: vecKey}, {ID: "a:b", Key: vecKey}, {ID: `a"b`, Key: vecKey}, {ID: "ok"}, {ID: strings.Repeat("a", 257), Key: vecKey}} {
		if _, err := NewSession(s); !errors.Is(err, ErrBadSecret) {
			t.Fatalf("%q accepted", s.ID)
		}
	}
}

func TestValueKinds(t *testing.T) {
	bodies := []string{
		`{}`, ` { } `, `{"a":null}`, `{"a":true,"b":false}`, `{"n":-0,"m":1.5e-300,"k":12345678901234567890}`,
		`{"s":"\u00e9\ud83d\ude00\n\t\"\\\/"}`, `{"nested":{"deep":[[[{"x":"}"}]]]}}`, `{"ünï":"çødé"}`,
		`{"empty":"","arr":[],"obj":{}}`,
	}
	for _, b := range bodies {
		c, srv := newPair(t)
		wire, err := c.EncryptJSON([]byte(b), nil)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		got, err := srv.DecryptJSON(wire, nil)
		if err != nil || string(got) != b {
			t.Fatalf("%s: %s %v", b, got, err)
		}
		if !jsonEqual(t, got, []byte(b)) {
			t.Fatal(b)
		}
	}
}

// Keys with '.', '?' and '*' sort after gjson path escaping, as upstream does.
func TestEscapedKeyOrder(t *testing.T) {
	c, _ := newPair(t)
	// Escaped: "a\.b" (0x5c) sorts after "a0" (0x30) and "aZ" (0x5a) but before "a_" (0x5f);
	// unescaped "a.b" would sort first.
	body := []byte(`{"a_":1,"a.b":2,"aZ":3,"a0":4,"a?":5,"\u0061*":6,"b":7}`)
	wire, err := c.EncryptJSON(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"a0", "aZ", "a*", "a.b", "a?", "a_", "b"}
	for seq, key := range order {
		e, err := ParseEnvelope(rawField(t, wire, key))
		if err != nil {
			t.Fatal(key, err)
		}
		if _, err := e.Open(vecKey, uint32(seq)); err != nil {
			t.Fatalf("%q is not at seq %d", key, seq)
		}
	}
}
