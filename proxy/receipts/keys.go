package receipts

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// File names inside the receipts directory.
const (
	signingKeyFile = "signing.key"   // Ed25519 private key, PKCS#8 PEM, 0600
	PublicKeyFile  = "signing.pub"   // its public key, PKIX PEM, 0644: hand it to auditors
	userKeyFile    = "user-hash.key" // 32 random bytes, 0600
	filePrefix     = "receipts-"
	fileSuffix     = ".jsonl"
)

// Keys are the receipt log's keys: the checkpoint signing key and the
// user-hash key.
type Keys struct {
	Signing ed25519.PrivateKey
	UserKey []byte
}

// KeyID names a public key in checkpoints: the first 8 bytes of the
// SHA-256 of its PKIX encoding, in hex.
func KeyID(pub ed25519.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:8])
}

// LoadOrCreateKeys reads the keys in dir, creating any that is missing.
func LoadOrCreateKeys(dir string) (*Keys, error) {
	if err := statedir.EnsureDir(dir); err != nil {
		return nil, err
	}
	k := &Keys{}
	kp := filepath.Join(dir, signingKeyFile)
	b, err := statedir.ReadFile(kp)
	if err != nil {
		return nil, err
	}
	if b == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate receipt signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encode receipt signing key: %w", err)
		}
		if err := statedir.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), statedir.SecretMode); err != nil {
			return nil, err
		}
		k.Signing = priv
	} else if k.Signing, err = parsePrivateKey(kp, b); err != nil {
		return nil, err
	}
	// The public key is rewritten every start, so it always matches.
	pub, err := EncodePublicKey(k.Signing.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if err := statedir.WriteFile(filepath.Join(dir, PublicKeyFile), pub, statedir.PublicMode); err != nil {
		return nil, err
	}
	up := filepath.Join(dir, userKeyFile)
	if k.UserKey, err = statedir.ReadFile(up); err != nil {
		return nil, err
	}
	if k.UserKey == nil {
		k.UserKey = make([]byte, 32)
		_, _ = rand.Read(k.UserKey)
		if err := statedir.WriteFile(up, k.UserKey, statedir.SecretMode); err != nil {
			return nil, err
		}
	} else if len(k.UserKey) != 32 {
		return nil, fmt.Errorf("%s: want 32 bytes, have %d", up, len(k.UserKey))
	}
	return k, nil
}

// ReadKeys reads the keys in dir without creating or writing anything (for
// commands run beside the service, perhaps as another user).
func ReadKeys(dir string) (*Keys, error) {
	kp := filepath.Join(dir, signingKeyFile)
	b, err := statedir.ReadFile(kp)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("no %s in %s: the receipt log was never started there", signingKeyFile, dir)
	}
	priv, err := parsePrivateKey(kp, b)
	if err != nil {
		return nil, err
	}
	up := filepath.Join(dir, userKeyFile)
	uk, err := statedir.ReadFile(up)
	if err != nil {
		return nil, err
	}
	if len(uk) != 32 {
		return nil, fmt.Errorf("%s: want 32 bytes, have %d", up, len(uk))
	}
	return &Keys{Signing: priv, UserKey: uk}, nil
}

func parsePrivateKey(path string, b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not PEM", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

// EncodePublicKey renders pub as PKIX PEM.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode receipt public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PKIX PEM Ed25519 public key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("receipt public key: not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("receipt public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("receipt public key: not Ed25519")
	}
	return pub, nil
}

// ReadPublicKey reads the exported public key of the log in dir.
func ReadPublicKey(dir string) (ed25519.PublicKey, error) {
	b, err := statedir.ReadFile(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("no %s in %s: the receipt log was never started there", PublicKeyFile, dir)
	}
	return ParsePublicKey(b)
}
