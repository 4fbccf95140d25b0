package keys

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseKeyPEM: ParseKeyPEM never panics or stalls, and whatever it
// accepts is an RSA key of MinBits..MaxBits that round-trips through
// PKCS#8. The seeds are the fixed test-only keys in testdata (generating
// keys in a coverage-instrumented fuzz worker takes minutes) and variants
// of them.
func FuzzParseKeyPEM(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.pem"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed keys in testdata: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add([]byte(strings.ReplaceAll(string(b), "\n", `\n`)))
		f.Add([]byte(`"` + string(b) + `"`))
		f.Add(withHeaders(f, b, "signing", "kid"))
		f.Add(append(append([]byte{}, b...), b...))
	}
	for _, s := range []string{
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAQ==\n-----END RSA PRIVATE KEY-----\n",
		"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
		"-----BEGIN PRIVATE KEY-----\n",
		"@/etc/passwd",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseKeyPEM(data)
		if err != nil {
			if key != nil {
				t.Fatal("key with error")
			}
			return
		}
		if b := key.N.BitLen(); b < MinBits || b > MaxBits {
			t.Fatalf("accepted a %d-bit key", b)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if err != nil || !again.Equal(key) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestTestdataKeys pins what the fixed seed keys are.
func TestTestdataKeys(t *testing.T) {
	for name, want := range map[string]error{
		"rsa2048.pem": nil, "rsa2048-pkcs1.pem": nil, "rsa2048-other.pem": nil,
		"rsa1024.pem": ErrKeySize, "ec-p256.pem": ErrNotRSA, "ed25519.pem": ErrNotRSA,
	} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseKeyPEM(b); (want == nil) != (err == nil) || want != nil && !strings.Contains(err.Error(), want.Error()) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}
