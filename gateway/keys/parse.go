package keys

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// Key sizes.
const (
	// MinBits is the smallest RSA modulus accepted (GitLab's docs:
	// openssl genrsa 2048; also jwks.MinRSABits).
	MinBits = 2048
	// MaxBits is the largest RSA modulus accepted: the gateway's token
	// validator accepts signatures of up to 1024 bytes.
	MaxBits = 8192
	// DefaultBits is the size of generated keys. 3072 bits is NIST's
	// 128-bit security level (SP 800-57), acceptable past 2030 when 2048
	// is not, and a self-managed appliance may keep a key for years
	// without rotation. The cost is small: a token is minted about once
	// an hour per user, an RS256 signature takes a few milliseconds and
	// is 384 bytes instead of 256.
	DefaultBits = 3072
)

// maxPEMBytes bounds what is read or parsed: an 8192-bit key is under 7 KiB
// of PEM, two of them with headers under 14 KiB.
const maxPEMBytes = 64 << 10

// Errors, for errors.Is. Messages that wrap them name the file or variable
// and say what to do; none ever contains key material.
var (
	// ErrMalformed: not PEM, not exactly one private key, trailing data,
	// or DER that does not parse.
	ErrMalformed = errors.New("malformed key PEM")
	// ErrNotRSA: a well-formed key of another type (EC, Ed25519, public
	// key, certificate, OpenSSH).
	ErrNotRSA = errors.New("not an RSA private key")
	// ErrKeySize: an RSA key outside MinBits..MaxBits.
	ErrKeySize = errors.New("RSA key size not accepted")
	// ErrEncrypted: a passphrase-protected key.
	ErrEncrypted = errors.New("encrypted private key")
	// ErrInsecureMode: a key file readable or writable by group or others.
	ErrInsecureMode = errors.New("key file permissions too open")
	// ErrOperatorKeys: Rotate on a Store whose keys come from the
	// operator (AIGW_SELF_SIGNED_JWT__* / DUO_WORKFLOW_SELF_SIGNED_JWT__*).
	ErrOperatorKeys = errors.New("keys are operator-supplied")
	// ErrNoKeys: Open with Options.NoGenerate and no key file yet.
	ErrNoKeys = errors.New("no keys generated yet")
)

// ParseKeyPEM parses one RSA private key in PEM, PKCS#1 ("RSA PRIVATE
// KEY", openssl genrsa before 3.0) or PKCS#8 ("PRIVATE KEY", openssl
// genrsa 3.x and GitLab's example.env), as GitLab's
// AIGW_SELF_SIGNED_JWT__SIGNING_KEY takes it. Surrounding whitespace and
// one pair of surrounding quotes are ignored, and a value on one line with
// literal "\n" escapes (as in an .env file) is unescaped. It refuses
// anything else: text outside the block, more than one block, encrypted
// keys, other key types, RSA keys outside MinBits..MaxBits.
func ParseKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("%w: want exactly one private key, found %d PEM blocks", ErrMalformed, len(blocks))
	}
	return blockKey(blocks[0])
}

// normalise undoes the usual ways a PEM gets mangled on its way into an
// environment variable.
func normalise(data []byte) []byte {
	d := bytes.TrimSpace(data)
	if n := len(d); n >= 2 && (d[0] == '"' && d[n-1] == '"' || d[0] == '\'' && d[n-1] == '\'') {
		d = bytes.TrimSpace(d[1 : n-1])
	}
	if !bytes.ContainsAny(d, "\n\r") && bytes.Contains(d, []byte(`\n`)) {
		d = bytes.TrimSpace(bytes.ReplaceAll(d, []byte(`\n`), []byte("\n")))
	}
	return d
}

// decodePEM splits data into PEM blocks and refuses anything between,
// before or after them.
func decodePEM(data []byte) ([]*pem.Block, error) {
	if len(data) > maxPEMBytes {
		return nil, fmt.Errorf("%w: %d bytes is more than %d", ErrMalformed, len(data), maxPEMBytes)
	}
	rest := normalise(data)
	if len(rest) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	var blocks []*pem.Block
	for len(rest) > 0 {
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			if len(blocks) == 0 {
				return nil, fmt.Errorf("%w: does not start with -----BEGIN", ErrMalformed)
			}
			return nil, fmt.Errorf("%w: data after PEM block %d", ErrMalformed, len(blocks))
		}
		b, r := pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: PEM block %d does not decode (bad base64, headers or END line)", ErrMalformed, len(blocks)+1)
		}
		blocks = append(blocks, b)
		rest = bytes.TrimSpace(r)
	}
	return blocks, nil
}

// blockKey parses one PEM block as an RSA private key and checks its size.
func blockKey(b *pem.Block) (*rsa.PrivateKey, error) {
	var k *rsa.PrivateKey
	switch b.Type {
	case "RSA PRIVATE KEY":
		if _, ok := b.Headers["Proc-Type"]; ok {
			return nil, fmt.Errorf("%w: decrypt it first (openssl pkey -in key.pem -out plain.pem)", ErrEncrypted)
		}
		if err := precheckPKCS1(b.Bytes); err != nil {
			return nil, err
		}
		var err error
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: RSA PRIVATE KEY (PKCS#1): %v", ErrMalformed, err)
		}
	case "PRIVATE KEY":
		if err := precheckPKCS8(b.Bytes); err != nil {
			return nil, err
		}
		key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PRIVATE KEY (PKCS#8): %v", ErrMalformed, err)
		}
		rk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: PKCS#8 key is %s; create one with openssl genrsa -out key.pem %d", ErrNotRSA, keyTypeName(key), DefaultBits)
		}
		k = rk
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: decrypt it first (openssl pkey -in key.pem -out plain.pem)", ErrEncrypted)
	case "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "DSA PRIVATE KEY", "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("%w: found %s; create one with openssl genrsa -out key.pem %d", ErrNotRSA, b.Type, DefaultBits)
	default:
		return nil, fmt.Errorf("%w: unexpected PEM type %q, want PRIVATE KEY or RSA PRIVATE KEY", ErrMalformed, truncate(b.Type, 40))
	}
	if err := checkSize(k.N.BitLen()); err != nil {
		return nil, err
	}
	return k, nil
}

// oidRSAEncryption is PKCS#8's algorithm for RSA keys.
var oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

// precheckPKCS8 reads the modulus size of an RSA PKCS#8 key before
// x509 parses it, see precheckPKCS1. Other algorithms and malformed DER
// are left to x509.
func precheckPKCS8(der []byte) error {
	var p8 struct {
		Version    int
		Algo       pkix.AlgorithmIdentifier
		PrivateKey []byte
	}
	if _, err := asn1.Unmarshal(der, &p8); err != nil || !p8.Algo.Algorithm.Equal(oidRSAEncryption) {
		return nil
	}
	return precheckPKCS1(p8.PrivateKey)
}

// precheckPKCS1 reads the modulus size of a PKCS#1 key before x509 parses
// it: x509 validates the key arithmetically, which for a modulus of tens
// of thousands of bits takes seconds.
func precheckPKCS1(der []byte) error {
	var head struct {
		Version int
		N       asn1.RawValue
	}
	if _, err := asn1.Unmarshal(der, &head); err != nil || head.N.Tag != asn1.TagInteger || head.N.Class != asn1.ClassUniversal {
		return nil
	}
	return checkSize(new(big.Int).SetBytes(head.N.Bytes).BitLen())
}

// checkSize refuses RSA moduli outside MinBits..MaxBits.
func checkSize(bits int) error {
	if bits < MinBits {
		return fmt.Errorf("%w: %d bits is less than %d; create one with openssl genrsa -out key.pem %d", ErrKeySize, bits, MinBits, DefaultBits)
	}
	if bits > MaxBits {
		return fmt.Errorf("%w: %d bits is more than %d", ErrKeySize, bits, MaxBits)
	}
	return nil
}

func keyTypeName(k any) string {
	switch fmt.Sprintf("%T", k) {
	case "*ecdsa.PrivateKey":
		return "ECDSA"
	case "ed25519.PrivateKey":
		return "Ed25519"
	case "*ecdh.PrivateKey":
		return "X25519"
	default:
		return fmt.Sprintf("%T", k)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
