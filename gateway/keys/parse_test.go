package keys

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestParseKeyPEM(t *testing.T) {
	k := poolKey(0)
	p1, p8 := pkcs1PEM(k), pkcs8PEM(t, k)
	escaped := strings.ReplaceAll(strings.TrimSpace(string(p8)), "\n", `\n`)
	crlf := bytes.ReplaceAll(p1, []byte("\n"), []byte("\r\n"))
	ok := []struct {
		name string
		in   []byte
	}{
		{"PKCS#1", p1},
		{"PKCS#8", p8},
		{"CRLF line ends", crlf},
		{"surrounding whitespace", append(append([]byte("\n  "), p8...), "\n\n"...)},
		{"escaped newlines (.env style)", []byte(escaped)},
		{"quoted escaped newlines", []byte(`"` + escaped + `"`)},
		{"single-quoted", []byte("'" + string(p1) + "'")},
		{"headers ignored", withHeaders(t, p8, "signing", "x")},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeyPEM(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(k) {
				t.Error("parsed a different key")
			}
		})
	}

	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey(t))
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: x509.MarshalPKCS1PrivateKey(k)})
	// A PKCS#1 key with a 20000-bit modulus: validating it would take
	// x509 seconds.
	n := new(big.Int).Lsh(big.NewInt(1), 19999)
	one := big.NewInt(1)
	hugeDER, err := asn1.Marshal(struct {
		Version               int
		N                     *big.Int
		E                     int
		D, P, Q, Dp, Dq, Qinv *big.Int
	}{0, n, 65537, n, n, n, one, one, one})
	if err != nil {
		t.Fatal(err)
	}
	huge8, err := asn1.Marshal(struct {
		Version    int
		Algo       pkix.AlgorithmIdentifier
		PrivateKey []byte
	}{0, pkix.AlgorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue}, hugeDER})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		in   []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrMalformed, "empty"},
		{"whitespace", []byte(" \n\t"), ErrMalformed, "empty"},
		{"garbage", []byte("hello world"), ErrMalformed, "-----BEGIN"},
		{"text before the key", append([]byte("Bag Attributes\n"), p8...), ErrMalformed, "-----BEGIN"},
		{"text after the key", append(p8, "trailer"...), ErrMalformed, "after PEM block"},
		{"two keys", append(p8, pkcs8PEM(t, poolKey(1))...), ErrMalformed, "exactly one"},
		{"bad base64", []byte("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"), ErrMalformed, "does not decode"},
		{"no END", bytes.TrimSuffix(p8, []byte("-----END PRIVATE KEY-----\n")), ErrMalformed, "does not decode"},
		{"bad DER PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), ErrMalformed, "PKCS#8"},
		{"bad DER PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), ErrMalformed, "PKCS#1"},
		{"PKCS#1 DER labelled PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), ErrMalformed, "PKCS#8"},
		{"unknown type", pem.EncodeToMemory(&pem.Block{Type: "SECRET", Bytes: []byte{1}}), ErrMalformed, "SECRET"},
		{"small RSA PKCS#1", pkcs1PEM(small(t)), ErrKeySize, "1024 bits"},
		{"small RSA PKCS#8", pkcs8PEM(t, small(t)), ErrKeySize, "1024 bits"},
		{"EC PKCS#8", pkcs8PEM(t, ecKey(t)), ErrNotRSA, "ECDSA"},
		{"EC PRIVATE KEY", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), ErrNotRSA, "EC PRIVATE KEY"},
		{"Ed25519", pkcs8PEM(t, edKey(t)), ErrNotRSA, "Ed25519"},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), ErrNotRSA, "PUBLIC KEY"},
		{"encrypted PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), ErrEncrypted, "openssl pkey"},
		{"encrypted PKCS#1", encrypted, ErrEncrypted, "openssl pkey"},
		{"huge modulus PKCS#1 (refused before x509 validates it)", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: hugeDER}), ErrKeySize, "20000 bits is more than 8192"},
		{"huge modulus PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: huge8}), ErrKeySize, "20000 bits is more than 8192"},
		{"too large", bytes.Repeat([]byte("A"), maxPEMBytes+1), ErrMalformed, "more than"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyPEM(tc.in)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v; want %v mentioning %q", err, tc.err, tc.msg)
			}
		})
	}
}
