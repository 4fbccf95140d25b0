package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tdx-guest/abi"
)

// verifyTDXQuoteSignatures checks, with the standard library, the three
// signatures that bind a quote to its PCK certificate: the attestation key's
// signature over the signed part of the quote, the PCK's signature over the
// QE report, and the QE report's commitment to the attestation key
// (REPORT_DATA = SHA-256(attestation key ‖ QE auth data) ‖ zeros). go-tdx-guest
// v0.3.1 does this for v4 quotes only; for v5 quotes this is the check, and
// for v4 it tells a signature failure from a library chain objection.
func verifyTDXQuoteSignatures(ev *TDXEvidence) error {
	sd := ev.Quote.GetSignedData()
	signed, err := tdxSignedBytes(ev)
	if err != nil {
		return err
	}
	attKey, err := p256Key(sd.GetEcdsaAttestationKey())
	if err != nil {
		return fmt.Errorf("attestation key: %w", err)
	}
	if !verifyP256RS(attKey, signed, sd.GetSignature()) {
		return errors.New("quote signature does not verify with the attestation key")
	}
	qe := sd.GetCertificationData().GetQeReportCertificationData()
	qeReport, err := abi.EnclaveReportToAbiBytes(qe.GetQeReport())
	if err != nil {
		return fmt.Errorf("QE report: %w", err)
	}
	pck, ok := ev.PCKChain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pck.Curve != elliptic.P256() {
		return errors.New("PCK certificate key is not ECDSA P-256")
	}
	if !verifyP256RS(pck, qeReport, qe.GetQeReportSignature()) {
		return errors.New("QE report signature does not verify with the PCK certificate")
	}
	h := sha256.New()
	h.Write(sd.GetEcdsaAttestationKey())
	h.Write(qe.GetQeAuthData().GetData())
	want := make([]byte, 64)
	copy(want, h.Sum(nil))
	if !bytes.Equal(qe.GetQeReport().GetReportData(), want) {
		return errors.New("QE report does not commit to the attestation key and QE auth data")
	}
	return nil
}

// tdxSignedBytes returns the part of the quote the attestation key signs:
// header and body (v4), or header, body descriptor and body (v5).
func tdxSignedBytes(ev *TDXEvidence) ([]byte, error) {
	if ev.Version == tdxQuoteVersionV5 {
		if ev.signedLen <= 0 || ev.signedLen > len(ev.Raw) {
			return nil, errors.New("v5 quote without its signed length")
		}
		return ev.Raw[:ev.signedLen], nil
	}
	h, err := abi.HeaderToAbiBytes(ev.Quote.GetHeader())
	if err != nil {
		return nil, fmt.Errorf("quote header: %w", err)
	}
	b, err := abi.TdQuoteBodyToAbiBytes(ev.Quote.GetTdQuoteBody())
	if err != nil {
		return nil, fmt.Errorf("quote body: %w", err)
	}
	return append(h, b...), nil
}

// p256Key decodes an uncompressed P-256 point given as X ‖ Y (64 bytes).
func p256Key(xy []byte) (*ecdsa.PublicKey, error) {
	if len(xy) != 64 {
		return nil, fmt.Errorf("%d bytes, want 64 (X ‖ Y)", len(xy))
	}
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, xy...))
	if err != nil {
		return nil, err
	}
	return k, nil
}

// verifyP256RS checks an ECDSA-SHA256 signature given as raw r ‖ s.
func verifyP256RS(k *ecdsa.PublicKey, msg, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	d := sha256.Sum256(msg)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(k, d[:], r, s)
}

// verifyP256RSCert checks an Intel raw r ‖ s signature with a certificate's key.
func verifyP256RSCert(c *x509.Certificate, msg, sig []byte) bool {
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	return ok && k.Curve == elliptic.P256() && verifyP256RS(k, msg, sig)
}
