package keys

import (
	"context"
	"crypto/rsa"
	"errors"
	"testing"
)

func TestStoreIsKeySource(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Bits: MinBits})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Signing()
	if _, err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	second := s.Signing()
	for _, k := range []Key{first, second} {
		pub, err := s.Key(context.Background(), k.ID)
		if err != nil {
			t.Fatalf("Key(%s): %v", k.ID, err)
		}
		if !pub.(*rsa.PublicKey).Equal(k.Private.Public()) {
			t.Errorf("Key(%s) returned another key", k.ID)
		}
	}
	if _, err := s.Key(context.Background(), "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown kid: %v", err)
	}
	all := s.All()
	if len(all) != 2 || !all[0].(*rsa.PublicKey).Equal(second.Private.Public()) {
		t.Errorf("All: %d keys, signing key first expected", len(all))
	}
	if _, err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(context.Background(), first.ID); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("key rotated out twice still validates: %v", err)
	}
}
