package attest

// STUB: replaced by the TDX implementation.

import (
	"context"
	"crypto/x509"

	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
)

// TDXEvidence is a parsed TDX QuoteV4 with the PCK chain it carries.
type TDXEvidence struct {
	Quote    *tdxpb.QuoteV4
	Raw      []byte              // the quote in Intel's binary (ABI) form
	PCKChain []*x509.Certificate // leaf, intermediate, root as carried in the quote
	FMSPC    string              // hex, from the PCK leaf's SGX extension
	PCEID    string              // hex
	CA       string              // "platform" or "processor", from the PCK issuer
}

// ParseTDXQuote parses a QuoteV4 in Intel's binary form.
func ParseTDXQuote(raw []byte) (*TDXEvidence, error) {
	return nil, newError(ClassMalformed, "tdx", nil, "not implemented")
}

// ParseTDXQuoteProto parses a protobuf-marshalled QuoteV4 as carried in
// raw_attestation_doc.
func ParseTDXQuoteProto(b []byte) (*TDXEvidence, error) {
	return nil, newError(ClassMalformed, "tdx", nil, "not implemented")
}

// TDXCollateralURLs lists the Intel PCS URLs whose responses verifying ev needs.
func TDXCollateralURLs(ev *TDXEvidence) []string { return nil }

// VerifyTDX checks the quote against Intel: signature, PCK chain, collateral,
// revocation and TCB status. It fills res.
func VerifyTDX(ctx context.Context, ev *TDXEvidence, opts HardwareOptions, res *Result) error {
	return newError(ClassSignature, "tdx", nil, "not implemented")
}

// CheckTDX checks the quote's measurements and binding against the reference
// values; it accepts when any entry of refs matches. It fills res.
func CheckTDX(ev *TDXEvidence, refs []TDXReference, b Binding, res *Result) error {
	return newError(ClassMeasurement, "tdx", nil, "not implemented")
}
