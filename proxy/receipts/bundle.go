package receipts

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// BundleFormat names the export format.
const BundleFormat = "duo-confidential-receipts-bundle/1"

// Bundle is a self-contained, signed export for an auditor: receipt files
// (whole, byte-exact), the whole trust log they link to, and the public key
// that signed the checkpoints and the bundle.
type Bundle struct {
	Format    string              `json:"format"`
	Created   time.Time           `json:"created"`
	From      time.Time           `json:"from,omitzero"`
	To        time.Time           `json:"to,omitzero"`
	PublicKey string              `json:"public_key"` // PKIX PEM
	KeyID     string              `json:"key_id"`
	TrustLog  []attest.TrustEntry `json:"trust_log"`
	Files     []NamedFile         `json:"files"`
	// Signature is Ed25519 over SHA-256 of the bundle's JSON with an
	// empty signature.
	Signature string `json:"signature"`
}

// Export builds a signed bundle of the receipt files in dir that hold
// receipts within [from, to) (zero: unbounded), whole, with the trust log.
func Export(dir string, trust []attest.TrustEntry, from, to time.Time, now time.Time) ([]byte, error) {
	keys, err := ReadKeys(dir)
	if err != nil {
		return nil, err
	}
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	pub := keys.Signing.Public().(ed25519.PublicKey)
	pemKey, err := EncodePublicKey(pub)
	if err != nil {
		return nil, err
	}
	b := Bundle{Format: BundleFormat, Created: now.UTC(), From: from, To: to, PublicKey: string(pemKey), KeyID: KeyID(pub),
		TrustLog: trust, Files: []NamedFile{}}
	if b.TrustLog == nil {
		b.TrustLog = []attest.TrustEntry{}
	}
	for i, name := range files {
		// A file holds receipts from its own start until the next file's.
		if !to.IsZero() {
			if t, ok := fileTime(name); ok && !t.Before(to) {
				break
			}
		}
		if !from.IsZero() && i+1 < len(files) {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.ModTime().Before(from) {
				continue
			}
		}
		c, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		b.Files = append(b.Files, NamedFile{Name: name, Content: string(c)})
	}
	sum, err := bundleDigest(&b)
	if err != nil {
		return nil, err
	}
	b.Signature = b64.EncodeToString(ed25519.Sign(keys.Signing, sum[:]))
	out, err := json.MarshalIndent(&b, "", " ")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return append(out, '\n'), nil
}

// fileTime is the creation time in a file name.
func fileTime(name string) (time.Time, bool) {
	if len(name) < len(filePrefix)+13+len(fileSuffix) {
		return time.Time{}, false
	}
	s := name[len(filePrefix)+13 : len(name)-len(fileSuffix)]
	t, err := time.Parse("20060102T150405.000000000Z", s)
	return t, err == nil
}

func bundleDigest(b *Bundle) ([32]byte, error) {
	c := *b
	c.Signature = ""
	j, err := json.Marshal(&c)
	if err != nil {
		return [32]byte{}, fmt.Errorf("bundle: %w", err)
	}
	return sha256.Sum256(j), nil
}

// VerifyBundle checks a bundle's signature (with pinned, when given: the key
// the auditor received from the operator out of band; otherwise with the
// key inside, whose ID the report carries), its trust log's chain, and its
// receipts against both.
func VerifyBundle(data []byte, pinned ed25519.PublicKey, o VerifyOptions) (*Report, *Bundle, error) {
	var b Bundle
	if err := strict(data, &b); err != nil {
		return nil, nil, fmt.Errorf("bundle: not a receipts bundle: %w", err)
	}
	if b.Format != BundleFormat {
		return nil, nil, fmt.Errorf("bundle: format %q, want %q", b.Format, BundleFormat)
	}
	pub, err := ParsePublicKey([]byte(b.PublicKey))
	if err != nil {
		return nil, nil, fmt.Errorf("bundle: %w", err)
	}
	if pinned != nil && !pub.Equal(pinned) {
		return nil, nil, fmt.Errorf("bundle: signed by key %s, not by the pinned key %s", KeyID(pub), KeyID(pinned))
	}
	sig, err := b64.DecodeString(b.Signature)
	if err != nil {
		return nil, nil, errors.New("bundle: signature is not base64url")
	}
	sum, err := bundleDigest(&b)
	if err != nil {
		return nil, nil, err
	}
	if !ed25519.Verify(pub, sum[:], sig) {
		return nil, nil, errors.New("bundle: the signature does not match its content: the bundle was altered")
	}
	if err := attest.VerifyTrustChain(b.TrustLog); err != nil {
		return nil, nil, fmt.Errorf("bundle: trust log: %w", err)
	}
	o.PublicKey, o.Trust = pub, b.TrustLog
	return VerifyFiles(b.Files, o), &b, nil
}
