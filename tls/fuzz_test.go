package tls

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// FuzzChainNames feeds arbitrary PEM to the reader of a certificate
// file's names (what the files source serves when tls.names is empty):
// it must never panic, and every name it returns must be one the first
// certificate block really carries and one CheckName accepts or an IP.
//
// (checkPair is covered by table tests: its key-match check runs P-256
// scalar multiplication, which under fuzzing instrumentation manages a
// handful of executions a second.)
func FuzzChainNames(f *testing.F) {
	ca := testutil.NewCA(f, "Site PKI test root", 365*24*time.Hour)
	now := time.Now()
	cert, key := ca.LeafPEM(f, []string{"localhost", "127.0.0.1", "*.duo.internal"}, now.Add(-time.Hour), now.Add(time.Hour))
	f.Add(cert)
	f.Add(append(append([]byte(nil), key...), cert...))
	f.Add(append(append([]byte(nil), cert...), ca.PEM...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := chainNames(b, "tls.crt")
		if err != nil {
			return
		}
		if len(names) == 0 {
			t.Fatal("no error and no names")
		}
		var leaf *x509.Certificate
		for rest := b; leaf == nil; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				t.Fatal("names from input without a certificate")
			}
			if blk.Type == "CERTIFICATE" {
				if leaf, err = x509.ParseCertificate(blk.Bytes); err != nil {
					t.Fatalf("names from an unparsable certificate: %v", err)
				}
			}
		}
		for _, n := range names {
			if leaf.VerifyHostname(n) != nil && net.ParseIP(n) == nil {
				t.Fatalf("name %q is not covered by the certificate it came from", n)
			}
		}
	})
}
