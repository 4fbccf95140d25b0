package collateral

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Real vendor URLs as the verifiers build them.
const (
	tcbURL     = "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"
	qeURL      = "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"
	pckCRLURL  = "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
	vcekURL    = "https://kdsintf.amd.com/vcek/v1/Milan/0123456789abcdef0123456789abcdef?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
	chainURL   = "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
	amdCRLURL  = "https://kdsintf.amd.com/vcek/v1/Milan/crl"
	testIssuer = "-----BEGIN%20CERTIFICATE-----%0Atest%0A-----END%20CERTIFICATE-----%0A"
)

// tcbInfoJSON is a TCB info response shaped like Intel's, with the dates
// that matter here.
func tcbInfoJSON(issue, next time.Time) []byte {
	return fmt.Appendf(nil, `{"tcbInfo":{"id":"TDX","version":3,"issueDate":%q,"nextUpdate":%q,"fmspc":"50806f000000"},"signature":"00"}`,
		issue.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339))
}

func qeIdentityJSON(issue, next time.Time) []byte {
	return fmt.Appendf(nil, `{"enclaveIdentity":{"id":"TD_QE","version":2,"issueDate":%q,"nextUpdate":%q},"signature":"00"}`,
		issue.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339))
}

// testCA is a throwaway CA that can sign server certificates and CRLs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "collateral test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// leaf issues a certificate for hosts (DNS names) valid in [nb, na].
func (ca *testCA) leaf(t testing.TB, nb, na time.Time, hosts ...string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "collateral test leaf"},
		NotBefore:    nb,
		NotAfter:     na,
		DNSNames:     hosts,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// crl makes a DER CRL with the given update window.
func (ca *testCA) crl(t testing.TB, this, next time.Time) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: this,
		NextUpdate: next,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func item(url string, body []byte, fetched time.Time) *attest.CollateralItem {
	return &attest.CollateralItem{URL: url, Body: body, FetchedAt: fetched.UTC().Truncate(time.Second), Source: SourceOnline}
}

func issuerHeader() http.Header {
	return http.Header{"Tcb-Info-Issuer-Chain": {testIssuer}, "Content-Type": {"application/json"}}
}
