package jwks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

var b64 = base64.RawURLEncoding.EncodeToString

func pubJWK(t testing.TB, k *rsa.PrivateKey, kid string) string {
	t.Helper()
	return fmt.Sprintf(`{"kty":"RSA","kid":%q,"use":"sig","alg":"RS256","n":%q,"e":%q}`,
		kid, b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes()))
}

func privJWK(t testing.TB, k any) string {
	t.Helper()
	jk, err := jwk.Import(k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jk)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// smallRSAJWK is a syntactically valid 1024-bit RSA public JWK.
func smallRSAJWK(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf(`{"kty":"RSA","kid":"small","n":%q,"e":"AQAB"}`, b64(bytes.Repeat([]byte{0xc3}, 128)))
}

func TestParseSet(t *testing.T) {
	k0, k1 := rsaKey(t, 0), rsaKey(t, 1)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecJWK, edJWK := publicJWK(t, &ec.PublicKey, "ec"), publicJWK(t, edPub, "ed")
	set := func(entries ...string) []byte { return []byte(`{"keys":[` + strings.Join(entries, ",") + `]}`) }

	refused := []struct {
		name, want string
		body       []byte
	}{
		{"invalid JSON", "invalid JSON", []byte(`{"keys":`)},
		{"not an object", "invalid JSON", []byte(`[1,2]`)},
		{"null", "not an object", []byte(`null`)},
		{"no keys", `no "keys"`, []byte(`{"key":[]}`)},
		{"keys not array", "not an array", []byte(`{"keys":{}}`)},
		{"keys null", "not an array", []byte(`{"keys":null}`)},
		{"empty set", "no usable keys", set()},
		{"entry not object", "not an object", set(`"x"`)},
		{"kid not string", "kid is not a string", set(`{"kty":"RSA","kid":1}`)},
		{"RSA private", "private key material", set(pubJWK(t, k0, "a"), privJWK(t, k1))},
		{"EC private", "private key material", set(pubJWK(t, k0, "a"), privJWK(t, ec))},
		{"Ed25519 private", "private key material", set(pubJWK(t, k0, "a"), privJWK(t, edPriv))},
		{"symmetric", "private key material", set(pubJWK(t, k0, "a"), `{"kty":"oct","kid":"h","k":"c2VjcmV0"}`)},
		{"private member on unknown kty", "private key material", set(pubJWK(t, k0, "a"), `{"kty":"PQ","kid":"x","d":"AA"}`)},
		{"duplicate kid", "duplicate kid", set(pubJWK(t, k0, "a"), pubJWK(t, k1, "a"))},
		{"duplicate kid on a skipped key", "duplicate kid", set(pubJWK(t, k0, "a"), `{"kty":"PQ","kid":"a"}`)},
		{"only a small RSA key", "no usable keys", set(smallRSAJWK(t))},
		{"too many keys", "exceeds the limit", set(slicesRepeat(`{"kty":"PQ"}`, MaxKeys+1)...)},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := parseSet(tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want error containing %q", snap, err, tc.want)
			}
			if strings.Contains(tc.want, "private") && !errors.Is(err, ErrPrivateKey) {
				t.Fatalf("%v does not wrap ErrPrivateKey", err)
			}
		})
	}

	t.Run("mixed set", func(t *testing.T) {
		snap, err := parseSet(set(
			pubJWK(t, k0, "a"),
			smallRSAJWK(t),
			`{"kty":"PQ","kid":"future"}`,
			strings.Replace(pubJWK(t, k1, "enc"), `"sig"`, `"enc"`, 1),
			ecJWK, edJWK,
			strings.Replace(pubJWK(t, k1, ""), `"kid":"",`, "", 1),
		))
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.skipped) != 3 || len(snap.all) != 4 || len(snap.byKID) != 3 {
			t.Fatalf("skipped %q, %d keys, %d kids", snap.skipped, len(snap.all), len(snap.byKID))
		}
		for _, why := range snap.skipped {
			t.Log(why)
		}
		want := []Key{
			{KID: "a", Kty: "RSA", Alg: "RS256", Use: "sig", Bits: 2048},
			{KID: "ec", Kty: "EC", Bits: 256},
			{KID: "ed", Kty: "OKP", Bits: 256},
			{Kty: "RSA", Alg: "RS256", Use: "sig", Bits: 2048},
		}
		for i, w := range want {
			got := snap.info[i]
			if got.Thumbprint == "" {
				t.Fatalf("key %d: no thumbprint", i)
			}
			got.Thumbprint = ""
			if got != w {
				t.Fatalf("key %d: %+v, want %+v", i, got, w)
			}
		}
		if tp, _ := Thumbprint(&k0.PublicKey); snap.info[0].Thumbprint != tp {
			t.Fatal("thumbprint mismatch")
		}
		if !snap.byKID["a"].(*rsa.PublicKey).Equal(&k0.PublicKey) || !snap.all[3].(*rsa.PublicKey).Equal(&k1.PublicKey) {
			t.Fatal("wrong keys")
		}
	})
}

func publicJWK(t testing.TB, pub any, kid string) string {
	t.Helper()
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
