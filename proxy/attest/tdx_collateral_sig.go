package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Intel's names and versions for TDX collateral (Intel PCS API v4).
const (
	tcbSigningCN       = "Intel SGX TCB Signing"
	tcbInfoChainHeader = "Tcb-Info-Issuer-Chain"
	qeIDChainHeader    = "Sgx-Enclave-Identity-Issuer-Chain"
	tdxTCBInfoID       = "TDX"
	tdxTCBInfoVersion  = 3
	tdQEIdentityID     = "TD_QE"
	tdQEIdentityVer    = 2
	maxIssuerChainSize = 16 << 10
)

// signedCollateral is a PCS response: the signed JSON value exactly as
// received and Intel's raw r ‖ s signature over it (hex).
type signedCollateral struct {
	TcbInfo         json.RawMessage `json:"tcbInfo"`
	EnclaveIdentity json.RawMessage `json:"enclaveIdentity"`
	Signature       string          `json:"signature"`
}

// verifyTDXCollateralSignatures verifies every collateral item against
// Intel's root before any of its fields is read: the root CA CRL by the
// trusted root, the PCK CRL by the quote's verified intermediate, the TCB
// info and QE identity by an "Intel SGX TCB Signing" certificate that
// chains to the trusted root at now and is not on the root CA CRL. Only then
// are the signed bytes decoded. Every failure is ClassCollateral, so forged
// collateral can never surface as a TCB verdict.
func verifyTDXCollateralSignatures(items []tdxItem, chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (*tdxCollateral, error) {
	inter, root := chain[1], chain[2]
	col := &tdxCollateral{}
	var err error
	if col.rootCRL, err = parseCRL(items[3].item.Body); err != nil {
		return nil, newError(ClassCollateral, items[3].name, err, "parse CRL")
	}
	if err := col.rootCRL.CheckSignatureFrom(root); err != nil {
		return nil, newError(ClassCollateral, items[3].name, err, "root CA CRL is not signed by %q", root.Subject.CommonName)
	}
	if col.pckCRL, err = parseCRL(items[2].item.Body); err != nil {
		return nil, newError(ClassCollateral, items[2].name, err, "parse CRL")
	}
	if err := col.pckCRL.CheckSignatureFrom(inter); err != nil {
		return nil, newError(ClassCollateral, items[2].name, err, "PCK CRL is not signed by %q", inter.Subject.CommonName)
	}
	tcbRaw, err := verifySignedCollateral(items[0], tcbInfoChainHeader, roots, col.rootCRL, now, func(s *signedCollateral) json.RawMessage { return s.TcbInfo })
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(tcbRaw, &col.tcbInfo.TcbInfo); err != nil {
		return nil, newError(ClassCollateral, items[0].name, err, "decode the signed TCB info")
	}
	if ti := col.tcbInfo.TcbInfo; ti.ID != tdxTCBInfoID || ti.Version != tdxTCBInfoVersion || len(ti.TcbLevels) == 0 {
		return nil, newError(ClassCollateral, items[0].name, nil, "TCB info is id %q version %d with %d levels; want a TDX TCB info version 3", ti.ID, ti.Version, len(ti.TcbLevels))
	}
	qeRaw, err := verifySignedCollateral(items[1], qeIDChainHeader, roots, col.rootCRL, now, func(s *signedCollateral) json.RawMessage { return s.EnclaveIdentity })
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(qeRaw, &col.qeIdentity.EnclaveIdentity); err != nil {
		return nil, newError(ClassCollateral, items[1].name, err, "decode the signed QE identity")
	}
	if qi := col.qeIdentity.EnclaveIdentity; qi.ID != tdQEIdentityID || qi.Version != tdQEIdentityVer || len(qi.TcbLevels) == 0 {
		return nil, newError(ClassCollateral, items[1].name, nil, "QE identity is id %q version %d with %d levels; want a TD_QE identity version 2", qi.ID, qi.Version, len(qi.TcbLevels))
	}
	return col, nil
}

// verifySignedCollateral checks one signed PCS JSON response and returns the
// signed value's bytes.
func verifySignedCollateral(it tdxItem, chainHeader string, roots *x509.CertPool, rootCRL *x509.RevocationList, now time.Time, value func(*signedCollateral) json.RawMessage) (json.RawMessage, error) {
	var s signedCollateral
	if err := json.Unmarshal(it.item.Body, &s); err != nil {
		return nil, newError(ClassCollateral, it.name, err, "decode the signed JSON response")
	}
	raw := value(&s)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, newError(ClassCollateral, it.name, nil, "the response carries no signed object")
	}
	sig, err := hex.DecodeString(s.Signature)
	if err != nil || len(sig) != 64 {
		return nil, newError(ClassCollateral, it.name, err, "signature is not 64 hex-encoded bytes (r ‖ s)")
	}
	signer, err := tcbSigningCert(it.item.Header, chainHeader, roots, now)
	if err != nil {
		return nil, newError(ClassCollateral, it.name, err, "issuer chain (%s header)", chainHeader)
	}
	for _, rc := range rootCRL.RevokedCertificateEntries {
		if rc.SerialNumber != nil && rc.SerialNumber.Cmp(signer.SerialNumber) == 0 {
			return nil, newError(ClassCollateral, it.name, nil, "its signing certificate (serial %x) is revoked by the root CA CRL", signer.SerialNumber)
		}
	}
	if !verifyP256RSCert(signer, raw, sig) {
		return nil, newError(ClassCollateral, it.name, nil, "signature does not verify with %q: not Intel-signed or altered", signer.Subject.CommonName)
	}
	return raw, nil
}

// tcbSigningCert reads the issuer chain header (URL-escaped PEM: signing
// certificate, then root) and returns the signing certificate once it is
// verified to the trusted roots at now. The root in the header is not
// trusted; only the pool is.
func tcbSigningCert(h http.Header, name string, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	vals := h.Values(name)
	if len(vals) != 1 || vals[0] == "" {
		return nil, fmt.Errorf("want exactly one %s header, got %d", name, len(vals))
	}
	if len(vals[0]) > maxIssuerChainSize {
		return nil, fmt.Errorf("%s header is %d bytes, more than %d", name, len(vals[0]), maxIssuerChainSize)
	}
	pemText, err := url.QueryUnescape(vals[0])
	if err != nil {
		return nil, fmt.Errorf("URL-decode: %w", err)
	}
	blk, _ := pem.Decode([]byte(pemText))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM signing certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	if c.Subject.CommonName != tcbSigningCN {
		return nil, fmt.Errorf("signing certificate CN %q, want %q", c.Subject.CommonName, tcbSigningCN)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("signing certificate does not chain to the trusted Intel SGX Root CA: %w", err)
	}
	return c, nil
}

// hexEqual compares two hex strings as bytes: Intel-signed TCB infos spell
// FMSPC and PCEID in upper case, the PCK extension reader in lower case.
func hexEqual(a, b string) bool {
	x, err1 := hex.DecodeString(a)
	y, err2 := hex.DecodeString(b)
	return err1 == nil && err2 == nil && len(x) > 0 && bytes.Equal(x, y)
}
