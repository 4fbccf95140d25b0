package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Generating RSA keys under -race on a small machine takes seconds, so the
// tests draw from a pool generated once, in parallel. Consecutive draws are
// always different keys.
const poolSize = 8

var (
	poolOnce sync.Once
	pool     [poolSize]*rsa.PrivateKey
	poolNext atomic.Uint64
	// lastBits records the size Open/Rotate asked generateKey for.
	lastBits atomic.Int64
)

func fillPool() {
	poolOnce.Do(func() {
		var wg sync.WaitGroup
		for i := range pool {
			wg.Go(func() {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					panic(err)
				}
				pool[i] = k
			})
		}
		wg.Wait()
	})
}

func TestMain(m *testing.M) {
	generateKey = func(bits int) (*rsa.PrivateKey, error) {
		fillPool()
		lastBits.Store(int64(bits))
		return pool[(poolNext.Add(1)-1)%poolSize], nil
	}
	os.Exit(m.Run())
}

// poolKey returns pool key i (not drawn through generateKey).
func poolKey(i int) *rsa.PrivateKey {
	fillPool()
	return pool[i%poolSize]
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock returns a Now that advances one hour per call.
func clock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return t0.Add(time.Duration(n.Add(1)-1) * time.Hour) }
}

func pkcs1PEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func pkcs8PEM(t testing.TB, k any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

var (
	smallOnce sync.Once
	smallKey  *rsa.PrivateKey
)

// small returns a 1024-bit RSA key.
func small(t testing.TB) *rsa.PrivateKey {
	smallOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(fmt.Sprint("1024-bit key: ", err))
		}
		smallKey = k
	})
	return smallKey
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func ids(ks []Key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.ID
	}
	return out
}
