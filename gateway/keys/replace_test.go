package keys

import (
	"errors"
	"testing"
)

func TestReplaceOperator(t *testing.T) {
	k0, k1 := pkcs1PEM(poolKey(0)), pkcs1PEM(poolKey(1))
	s, err := Open(t.TempDir(), Options{SigningKeyPEM: k0})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Signing().ID
	if changed, err := s.ReplaceOperator(Options{SigningKeyPEM: k0}); changed || err != nil {
		t.Errorf("same keys: changed %v, err %v", changed, err)
	}
	// A rotation: the new key signs, the old one still validates.
	if changed, err := s.ReplaceOperator(Options{SigningKeyPEM: k1, ValidationKeyPEM: k0}); !changed || err != nil {
		t.Fatalf("rotation: changed %v, err %v", changed, err)
	}
	if s.Signing().ID == first {
		t.Error("the signing key did not change")
	}
	if v := s.Validation(); len(v) != 2 || v[1].ID != first {
		t.Errorf("validation keys %v, want the new and the previous", ids(v))
	}
	// Broken or missing files keep what works.
	for name, o := range map[string]Options{
		"malformed": {SigningKeyPEM: []byte("not a key")},
		"gone":      {},
	} {
		if _, err := s.ReplaceOperator(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if v := s.Validation(); len(v) != 2 || v[1].ID != first {
			t.Errorf("%s: keys changed to %v", name, ids(v))
		}
	}
	gen, err := Open(t.TempDir(), Options{Bits: MinBits})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.ReplaceOperator(Options{SigningKeyPEM: k1}); !errors.Is(err, ErrGeneratedKeys) {
		t.Errorf("generated store: %v, want ErrGeneratedKeys", err)
	}
}
