package secret

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/verifiertest"
)

func TestIDGolden(t *testing.T) {
	// Spec §4 test vector.
	got := ID(bytes.Repeat([]byte{0x01}, PublicKeySize))
	if want := "UZCr2N5hjW5qhLG5T7nbURnj1eeKOpr/R/C2xCCAmTM="; got != want {
		t.Fatalf("ID = %s, want %s", got, want)
	}
}

// responderExchanger answers in process, letting a test alter the response.
func responderExchanger(t *testing.T, r *Responder, alter func([]byte, *ExchangeResponse), server *Secret) Exchanger {
	return exchangerFunc(func(_ context.Context, pub []byte) (*ExchangeResponse, error) {
		if len(pub) != PublicKeySize {
			t.Errorf("public key is %d bytes, want %d", len(pub), PublicKeySize)
		}
		resp, s, err := r.Respond(pub)
		if err != nil {
			return nil, err
		}
		if server != nil {
			*server = s
		}
		if alter != nil {
			alter(pub, &resp)
		}
		return &resp, nil
	})
}

func TestExchangeRoundTrip(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	r := newResponder(t, b)
	var server Secret
	got, err := Exchange(context.Background(), responderExchanger(t, r, nil, &server), b.Coordinator.MeshCACert, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != server.ID || got.Key != server.Key {
		t.Fatalf("client %v and responder %v disagree", got, server)
	}
	if got.Key == ([KeySize]byte{}) || len(got.ID) != 44 {
		t.Fatalf("degenerate secret %v", got)
	}
	if !server.ExpiresAt.Equal(testNow.Add(DefaultServerTTL)) {
		t.Errorf("server lease ends %s", server.ExpiresAt)
	}
	// Fresh key pair per exchange: a second exchange has another ID and K.
	again, err := Exchange(context.Background(), responderExchanger(t, r, nil, nil), b.Coordinator.MeshCACert, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == got.ID || again.Key == got.Key {
		t.Fatal("two exchanges produced the same secret")
	}
}

func TestExchangeVerifyFailures(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	r := newResponder(t, b)
	otherCA, err := attesttest.NewCoordinator(testNow)
	if err != nil {
		t.Fatal(err)
	}
	foreignKey, foreignCert, err := IssueMeshCert(otherCA.MeshCAKey, otherCA.MeshCACert, testNow.Add(-time.Hour), testNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, expiredCert, err := IssueMeshCert(b.Coordinator.MeshCAKey, b.Coordinator.MeshCACert, testNow.Add(-2*time.Hour), testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	edCert := issueEd25519Leaf(t, b)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	tests := []struct {
		name  string
		alter func([]byte, *ExchangeResponse)
		want  error
	}{
		{"tampered enc", func(pub []byte, x *ExchangeResponse) { x.EncapsulatedKey[7] ^= 0x80 }, ErrSignature},
		{"truncated enc", func(pub []byte, x *ExchangeResponse) { x.EncapsulatedKey = x.EncapsulatedKey[:100] }, ErrMalformedResponse},
		{"wrong signature", func(pub []byte, x *ExchangeResponse) {
			x.Signature, _ = ecdsa.SignASN1(rand.Reader, otherKey, bytes.Repeat([]byte{1}, 32))
		}, ErrSignature},
		{"garbage signature", func(pub []byte, x *ExchangeResponse) { x.Signature = []byte{0x30, 0x01} }, ErrSignature},
		{"mesh cert from another CA", func(pub []byte, x *ExchangeResponse) {
			// Signed correctly by the foreign key: only the chain is wrong.
			x.MeshCert = foreignCert.Raw
			x.Signature = mustSign(t, foreignKey, pub, x)
		}, ErrMeshCertUntrusted},
		{"non-ECDSA mesh cert", func(pub []byte, x *ExchangeResponse) { x.MeshCert = edCert.Raw }, ErrMeshCertKey},
		{"expired mesh cert", func(pub []byte, x *ExchangeResponse) { x.MeshCert = expiredCert.Raw }, ErrMeshCertExpired},
		{"mesh CA itself", func(pub []byte, x *ExchangeResponse) { x.MeshCert = b.Coordinator.MeshCACert.Raw }, ErrSignature},
		{"garbage cert", func(pub []byte, x *ExchangeResponse) { x.MeshCert = []byte("not DER") }, ErrMalformedResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Exchange(context.Background(), responderExchanger(t, r, tc.alter, nil), b.Coordinator.MeshCACert, testNow)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("no attested mesh CA", func(t *testing.T) {
		if _, err := Exchange(context.Background(), responderExchanger(t, r, nil, nil), nil, testNow); !errors.Is(err, ErrNotAttested) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("verification time is honoured", func(t *testing.T) {
		_, err := Exchange(context.Background(), responderExchanger(t, r, nil, nil), b.Coordinator.MeshCACert, testNow.Add(72*time.Hour))
		if !errors.Is(err, ErrMeshCertExpired) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("re-signed tampered enc yields another K", func(t *testing.T) {
		// ML-KEM's implicit rejection: a valid-looking enc decapsulates to
		// a different key, so the signature is what binds enc to the
		// secret service. A mesh-key holder altering enc only breaks the
		// exchange for itself.
		var server Secret
		got, err := Exchange(context.Background(), responderExchanger(t, r, func(pub []byte, x *ExchangeResponse) {
			x.EncapsulatedKey[0] ^= 1
			x.Signature = mustSign(t, r.MeshKey, pub, x)
		}, &server), b.Coordinator.MeshCACert, testNow)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key == server.Key {
			t.Fatal("tampered enc derived the server's key")
		}
	})
}

func mustSign(t *testing.T, key *ecdsa.PrivateKey, pub []byte, x *ExchangeResponse) []byte {
	t.Helper()
	sig, err := ecdsa.SignASN1(rand.Reader, key, signedDigest(pub, x.EncapsulatedKey))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// issueEd25519Leaf issues a ServerAuth leaf with an Ed25519 key from the
// attested mesh CA: it chains, but the protocol requires ECDSA.
func issueEd25519Leaf(t *testing.T, b *attesttest.Backend) *x509.Certificate {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(99),
		Subject:      pkix.Name{CommonName: "ed25519 leaf"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.Coordinator.MeshCACert, pub, b.Coordinator.MeshCAKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSecretRedaction(t *testing.T) {
	s := Secret{ID: ID([]byte("x")), ExpiresAt: testNow}
	for i := range s.Key {
		s.Key[i] = 0xab
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "secret", s)
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), logBuf.String(), string(j)} {
		if strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "171") || strings.Contains(out, s.ID) {
			t.Errorf("secret leaks: %s", out)
		}
		if !strings.Contains(out, ShortID(s.ID)) {
			t.Errorf("no short ID in %s", out)
		}
	}
}

func BenchmarkExchange(b *testing.B) {
	be := verifiertest.Backend(b, testNow)
	r := newResponder(b, be)
	ex := exchangerFunc(func(_ context.Context, pub []byte) (*ExchangeResponse, error) {
		resp, _, err := r.Respond(pub)
		return &resp, err
	})
	for b.Loop() {
		if _, err := Exchange(context.Background(), ex, be.Coordinator.MeshCACert, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
