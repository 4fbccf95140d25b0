package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// RFC 7638 §3.1 example key and its thumbprint.
const (
	rfc7638N   = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc7638Kid = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

func rfc7638Key(t *testing.T) *rsa.PublicKey {
	t.Helper()
	n, err := base64.RawURLEncoding.DecodeString(rfc7638N)
	if err != nil {
		t.Fatal(err)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
}

func TestThumbprintRFC7638(t *testing.T) {
	got, err := Thumbprint(rfc7638Key(t))
	if err != nil || got != rfc7638Kid {
		t.Fatalf("Thumbprint = %q, %v; want %q", got, err, rfc7638Kid)
	}
}

func TestPublishGolden(t *testing.T) {
	got, err := Publish(rfc7638Key(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"keys":[{"alg":"RS256","e":"AQAB","kid":"` + rfc7638Kid + `","kty":"RSA","n":"` + rfc7638N + `","use":"sig"}]}`
	if string(got) != want {
		t.Fatalf("Publish =\n%s\nwant\n%s", got, want)
	}
}

func TestPublishRoundTrip(t *testing.T) {
	k0 := rsaKey(t, 0)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	in := []crypto.PublicKey{&k0.PublicKey, &ec.PublicKey, edPub}
	body, err := Publish(in...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), `"d"`) {
		t.Fatal("private member in output")
	}
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != len(in) {
		t.Fatalf("%d keys", set.Len())
	}
	for i, wantAlg := range []string{"RS256", "ES384", "EdDSA"} {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		if tp, _ := Thumbprint(in[i]); kid != tp {
			t.Errorf("key %d: kid %q, want thumbprint %q", i, kid, tp)
		}
		if use, _ := k.KeyUsage(); use != "sig" {
			t.Errorf("key %d: use %q", i, use)
		}
		if alg, _ := k.Algorithm(); alg.String() != wantAlg {
			t.Errorf("key %d: alg %q, want %q", i, alg, wantAlg)
		}
		var raw any
		if err := jwk.Export(k, &raw); err != nil {
			t.Fatal(err)
		}
		if !raw.(interface{ Equal(crypto.PublicKey) bool }).Equal(in[i]) {
			t.Errorf("key %d does not match", i)
		}
	}
	// Our own parser accepts what we publish.
	snap, err := parseSet(body)
	if err != nil || len(snap.byKID) != 3 || len(snap.skipped) != 0 {
		t.Fatalf("parseSet: %v", err)
	}
}

func TestPublishRefuses(t *testing.T) {
	k0 := rsaKey(t, 0)
	small := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(3), 1020), E: 65537}
	for name, keys := range map[string][]crypto.PublicKey{
		"private RSA":   {k0},
		"symmetric":     {[]byte("secret")},
		"small RSA":     {small},
		"duplicate":     {&k0.PublicKey, &k0.PublicKey},
		"unsupported":   {"nope"},
		"nil RSA":       {(*rsa.PublicKey)(nil)},
		"short ed25519": {ed25519.PublicKey{1, 2}},
	} {
		if out, err := Publish(keys...); err == nil {
			t.Errorf("%s: published %s", name, out)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := Publish(k0); !errors.Is(err, ErrPrivateKey) {
		t.Errorf("private key error %v does not wrap ErrPrivateKey", err)
	}
	if out, err := Publish(); err != nil || string(out) != `{"keys":[]}` {
		t.Errorf("empty: %s %v", out, err)
	}
	// Thumbprint accepts a private key and hashes its public half.
	a, err1 := Thumbprint(k0)
	b, err2 := Thumbprint(&k0.PublicKey)
	if err1 != nil || err2 != nil || a != b {
		t.Errorf("Thumbprint(private) %q %v, (public) %q %v", a, err1, b, err2)
	}
	if _, err := Thumbprint(small); err == nil {
		t.Error("Thumbprint of a small RSA key")
	}
}
