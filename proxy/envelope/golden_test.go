package envelope

import (
	"errors"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// The example wire request of privatemode-wire.md §6: model/stream/max_tokens stay plain,
// messages and temperature are encrypted, cache_salt is appended, and the
// sorted order gives cache_salt=0, messages=1, temperature=2.
func TestGoldenChatRequest(t *testing.T) {
	body := []byte(`{"model":"fake","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"stream":false,"max_tokens":5}`)
	salt := "c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ="
	withSalt, injected, err := EnsureCacheSalt(body, salt)
	if err != nil || !injected {
		t.Fatal(injected, err)
	}
	s, err := newSessionWithRand(testSecret, &countReader{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Nonce() != vecNonce {
		t.Fatalf("nonce %x", s.Nonce())
	}
	wire, err := s.EncryptJSON(withSalt, ChatRequestPlain)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/golden/chat_request.json", wire)

	for key, want := range map[string]string{"model": `"fake"`, "stream": `false`, "max_tokens": `5`} {
		if got := string(rawField(t, wire, key)); got != want {
			t.Fatalf("plain %s = %s", key, got)
		}
	}
	for key, c := range map[string]struct {
		seq uint32
		pt  string
	}{
		"cache_salt":  {0, `"` + salt + `"`},
		"messages":    {1, `[{"role":"user","content":"hi"}]`},
		"temperature": {2, `0.2`},
	} {
		e, err := ParseEnvelope(rawField(t, wire, key))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		pt, err := e.Open(vecKey, c.seq)
		if err != nil || string(pt) != c.pt {
			t.Fatalf("%s at seq %d: %q %v", key, c.seq, pt, err)
		}
	}
	// The server half recovers the client body byte for byte.
	srv := NewServerSession(lookupFor(testSecret))
	plain, err := srv.DecryptJSON(wire, ChatRequestPlain)
	if err != nil || string(plain) != string(withSalt) {
		t.Fatalf("server decrypt: %s %v", plain, err)
	}
	// A client-supplied salt is kept; a short one is refused.
	if out, injected, err := EnsureCacheSalt(withSalt, "x"); err != nil || injected || string(out) != string(withSalt) {
		t.Fatal("existing salt not kept", err)
	}
	for _, bad := range []string{`{"cache_salt":"short"}`, `{"cache_salt":null}`, `{"cache_salt":12345678901234567890123456789012345}`, `{"cache_salt":""}`} {
		if _, _, err := EnsureCacheSalt([]byte(bad), salt); !errors.Is(err, ErrBadCacheSalt) {
			t.Fatalf("%s: %v", bad, err)
		}
	}
	if _, _, err := EnsureCacheSalt([]byte(`{}`), "short"); !errors.Is(err, ErrBadCacheSalt) {
		t.Fatal("short injected salt accepted")
	}
}

func TestEnsureCacheSaltPlacement(t *testing.T) {
	salt := "0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		`{}`:                            `{"cache_salt":"` + salt + `"}`,
		" { } ":                         ` {"cache_salt":"` + salt + `" } `,
		`{"a":1}`:                       `{"a":1,"cache_salt":"` + salt + `"}`,
		"{\"a\":[1] \n}":                "{\"a\":[1],\"cache_salt\":\"" + salt + "\" \n}",
		`{"cache_salt":"` + salt + `"}`: `{"cache_salt":"` + salt + `"}`,
	} {
		out, _, err := EnsureCacheSalt([]byte(in), salt)
		if err != nil || string(out) != want {
			t.Fatalf("%q → %q %v, want %q", in, out, err, want)
		}
	}
	got, present, err := CacheSalt([]byte(`{"cache_salt":"` + salt + `\u0021"}`))
	if err != nil || !present || got != salt+"!" {
		t.Fatalf("CacheSalt %q %v %v", got, present, err)
	}
	if _, present, err := CacheSalt([]byte(`{"x":1}`)); present || err != nil {
		t.Fatal("absent salt reported")
	}
	quoted := `0123456789abcdef0123456789abcd"\` + "\x01"
	out, _, err := EnsureCacheSalt([]byte(`{}`), quoted)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := CacheSalt(out); err != nil || got != quoted {
		t.Fatalf("escaped salt round trip %q %v", got, err)
	}
	s, err := RandomCacheSalt()
	if err != nil || len(s) != 44 {
		t.Fatalf("RandomCacheSalt %q %v", s, err)
	}
}
