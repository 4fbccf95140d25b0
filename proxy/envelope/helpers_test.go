package envelope

import (
	"bytes"
	"encoding/json"
	"testing"
)

// countReader yields 0,1,2,… so the first nonce is the vectors' 000102…0b.
type countReader struct{ n byte }

func (r *countReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

var testSecret = Secret{ID: vecID, Key: vecKey}

func lookupFor(secrets ...Secret) func(string) (Secret, bool) {
	return func(id string) (Secret, bool) {
		for _, s := range secrets {
			if s.ID == id {
				return s, true
			}
		}
		return Secret{}, false
	}
}

func newPair(t testing.TB) (*Session, *ServerSession) {
	t.Helper()
	c, err := NewSession(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return c, NewServerSession(lookupFor(testSecret))
}

// jsonEqual compares two JSON documents semantically.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// rawField returns the raw top-level value of key in body (test helper, not hot).
func rawField(t testing.TB, body []byte, key string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m[key]
}
