package jwks

import (
	"crypto"
	"crypto/rsa"
	"testing"
)

// FuzzParseSet checks that parseSet never panics and that any set it
// accepts satisfies the package's invariants. Seeds live in
// testdata/fuzz/FuzzParseSet.
func FuzzParseSet(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"` + rfc7638N + `","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AA"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		snap, err := parseSet(body)
		if err != nil {
			if snap != nil {
				t.Fatal("snapshot with error")
			}
			return
		}
		if len(snap.all) == 0 || len(snap.all) != len(snap.info) || len(snap.byKID) > len(snap.all) || len(snap.all) > MaxKeys {
			t.Fatalf("inconsistent snapshot: %d keys, %d infos, %d kids", len(snap.all), len(snap.info), len(snap.byKID))
		}
		kids := map[string]bool{}
		for i, info := range snap.info {
			if info.Thumbprint == "" {
				t.Fatalf("key %d has no thumbprint", i)
			}
			if info.KID != "" {
				if kids[info.KID] {
					t.Fatalf("duplicate kid %q", info.KID)
				}
				kids[info.KID] = true
				eq, ok := snap.byKID[info.KID].(interface{ Equal(crypto.PublicKey) bool })
				if !ok || !eq.Equal(snap.all[i]) {
					t.Fatalf("kid %q maps to the wrong key", info.KID)
				}
			}
			switch k := snap.all[i].(type) {
			case *rsa.PrivateKey:
				t.Fatal("private key accepted")
			case *rsa.PublicKey:
				if k.N.BitLen() < MinRSABits {
					t.Fatalf("%d-bit RSA key accepted", k.N.BitLen())
				}
			}
		}
	})
}
