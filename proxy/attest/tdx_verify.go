package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/verify"
)

// VerifyTDX checks the quote against Intel: PCK chain, signature, and unless
// opts.SkipCollateral also collateral freshness, revocation and TCB status.
// It fills res and returns an *Error whose class names the failed step.
func VerifyTDX(ctx context.Context, ev *TDXEvidence, opts HardwareOptions, res *Result) error {
	res.Platform = PlatformTDX
	if ev == nil || ev.Quote == nil || len(ev.PCKChain) != 3 || ev.pckExt == nil {
		return res.reject(newError(ClassMalformed, "tdx", nil, "no parsed TDX evidence; use ParseTDXQuote or ParseTDXQuoteProto"))
	}
	now := opts.now()
	if res.VerifiedAt.IsZero() {
		res.VerifiedAt = now
	}
	res.Product = ev.FMSPC
	sum := sha256.Sum256(ev.Raw)
	res.EvidenceSHA256 = hex.EncodeToString(sum[:])
	setTDXMeasurements(res, ev)
	silenceVendorLogs()

	roots := tdxRoots(opts)
	chain, err := verifyPCKChain(ev, roots, now)
	if err != nil {
		res.addCheck("PCK chain", false, err.Error())
		return res.reject(err)
	}
	res.addCheck("PCK chain", true, "leads to "+chain[len(chain)-1].Subject.CommonName)

	if err := verifyTDXSignature(ev, roots, now); err != nil {
		res.addCheck("quote signature", false, err.Error())
		return res.reject(err)
	}
	detail := fmt.Sprintf("quote v%d", ev.Version)
	switch ev.BodyType {
	case tdxBodyTypeTD10:
		detail += ", TDX 1.0 body"
	case tdxBodyTypeTD15:
		detail += ", TDX 1.5 body"
	}
	res.addCheck("quote signature", true, detail)

	if opts.SkipCollateral {
		res.addCheck("collateral", true, "skipped by configuration: no TCB status or revocation check")
		return nil
	}
	if opts.Collateral == nil {
		e := newError(ClassCollateral, "tdx", nil, "no collateral source configured; import a collateral bundle or allow online fetching")
		res.addCheck("collateral", false, e.Msg)
		return res.reject(e)
	}
	if err := verifyTDXCollateral(ctx, ev, chain, roots, now, opts, res); err != nil {
		return res.reject(err)
	}
	return nil
}

// verifyTDXSignature checks the quote, QE report and attestation-key
// signatures. For v4 go-tdx-guest does it (re-checking the chain); when the
// library objects although all three signatures verify, the objection is
// about the certificates, so it is ClassChain. v5 quotes, which the library
// cannot parse, are checked by verifyTDXQuoteSignatures alone.
func verifyTDXSignature(ev *TDXEvidence, roots *x509.CertPool, now time.Time) error {
	own := verifyTDXQuoteSignatures(ev)
	if ev.Version == tdxQuoteVersionV5 {
		if own != nil {
			return newError(ClassSignature, "quote", own, "quote v5, QE report or attestation key signature does not verify")
		}
		return nil
	}
	if err := verify.TdxQuote(ev.Quote, &verify.Options{TrustedRoots: roots, Now: now}); err != nil {
		if own == nil {
			return newError(ClassChain, "PCK chain", err, "go-tdx-guest rejects the PCK certificates although the quote signatures verify")
		}
		return newError(ClassSignature, "quote", err, "quote, QE report or attestation key signature does not verify")
	}
	if own != nil {
		// The library accepted what our own check refuses: never accept
		// on a disagreement.
		return newError(ClassSignature, "quote", own, "quote signatures")
	}
	return nil
}

// verifyPCKChain verifies leaf → intermediate → trusted root with
// crypto/x509 at now, and checks the Intel subject names the library insists
// on, so that every chain problem is reported as ClassChain rather than
// surfacing later as an unclassifiable library error.
func verifyPCKChain(ev *TDXEvidence, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	leaf, inter := ev.PCKChain[0], ev.PCKChain[1]
	if leaf.Subject.CommonName != "Intel SGX PCK Certificate" {
		return nil, newError(ClassChain, "PCK certificate", nil, "subject CN %q is not an Intel PCK certificate", leaf.Subject.CommonName)
	}
	if inter.Subject.CommonName != "Intel SGX PCK Platform CA" && inter.Subject.CommonName != "Intel SGX PCK Processor CA" {
		return nil, newError(ClassChain, "PCK intermediate", nil, "subject CN %q is not an Intel PCK CA", inter.Subject.CommonName)
	}
	for i, c := range ev.PCKChain {
		if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			return nil, newError(ClassChain, "PCK chain", nil, "certificate %d (%s) uses %v, want ECDSA-SHA256", i, c.Subject.CommonName, c.SignatureAlgorithm)
		}
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, newError(ClassChain, "PCK chain", err, "PCK certificate does not chain to the trusted Intel SGX Root CA at %s", now.UTC().Format(time.RFC3339))
	}
	// A pool may offer several paths; the one through the quote's own
	// intermediate is the one the CRLs must be checked against.
	for _, ch := range chains {
		if len(ch) == 3 && ch[1].Equal(inter) {
			return ch, nil
		}
	}
	return nil, newError(ClassChain, "PCK chain", nil, "no verified path runs through the quote's intermediate %q", inter.Subject.CommonName)
}

// setTDXMeasurements records the quote's values in res, replacing earlier
// TDX entries so repeated calls do not duplicate them.
func setTDXMeasurements(res *Result, ev *TDXEvidence) {
	b := ev.Quote.GetTdQuoteBody()
	h := hex.EncodeToString
	ms := []Measurement{
		{Name: "MRTD", Actual: h(b.GetMrTd())},
		{Name: "MRSEAM", Actual: h(b.GetMrSeam())},
		{Name: "MRSIGNERSEAM", Actual: h(b.GetMrSignerSeam())},
	}
	for i, r := range b.GetRtmrs() {
		ms = append(ms, Measurement{Name: fmt.Sprintf("RTMR[%d]", i), Actual: h(r)})
	}
	ms = append(ms,
		Measurement{Name: "XFAM", Actual: h(b.GetXfam())},
		Measurement{Name: "TD_ATTRIBUTES", Actual: h(b.GetTdAttributes())},
		Measurement{Name: "MRCONFIGID", Actual: h(b.GetMrConfigId())},
		Measurement{Name: "MROWNER", Actual: h(b.GetMrOwner())},
		Measurement{Name: "MROWNERCONFIG", Actual: h(b.GetMrOwnerConfig())},
		Measurement{Name: "TEE_TCB_SVN", Actual: h(b.GetTeeTcbSvn())},
		Measurement{Name: "REPORT_DATA", Actual: h(b.GetReportData())},
	)
	if ev.BodyType == tdxBodyTypeTD15 {
		ms = append(ms,
			Measurement{Name: "TEE_TCB_SVN2", Actual: h(ev.TeeTcbSvn2)},
			Measurement{Name: "MR_SERVICETD", Actual: h(ev.MrServiceTD), Expected: h(make([]byte, 48)), Match: bytes.Equal(ev.MrServiceTD, make([]byte, 48))},
		)
	}
	ms = append(ms, pckMeasurements(ev)...)
	names := make(map[string]bool, len(ms))
	for _, m := range ms {
		names[m.Name] = true
	}
	kept := res.Measurements[:0:0]
	for _, m := range res.Measurements {
		if !names[m.Name] {
			kept = append(kept, m)
		}
	}
	res.Measurements = append(kept, ms...)
}

// setExpected records what policy expected for one measurement.
func setExpected(res *Result, name, expected string, match bool) {
	for i := range res.Measurements {
		if res.Measurements[i].Name == name {
			res.Measurements[i].Expected = expected
			res.Measurements[i].Match = match
			return
		}
	}
}
