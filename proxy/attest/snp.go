package attest

// STUB: replaced by the SEV-SNP implementation.

import (
	"context"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// SNPEvidence is a parsed SEV-SNP attestation: the report and the
// certificate chain (VCEK or VLEK, optionally ASK/ARK and a CRL) it carries.
type SNPEvidence struct {
	Attestation *spb.Attestation
	Raw         []byte // the input bytes as given
	Product     string // "Milan", "Genoa" or "Turin"
}

// ParseSNPReport parses a raw report (0x4A0 bytes), optionally followed by
// the extended-report certificate table.
func ParseSNPReport(raw []byte) (*SNPEvidence, error) {
	return nil, newError(ClassMalformed, "snp", nil, "not implemented")
}

// ParseSNPAttestationProto parses a protobuf-marshalled sevsnp.Attestation as
// carried in raw_attestation_doc.
func ParseSNPAttestationProto(b []byte) (*SNPEvidence, error) {
	return nil, newError(ClassMalformed, "snp", nil, "not implemented")
}

// SNPCollateralURLs lists the AMD KDS URLs whose responses verifying ev needs.
func SNPCollateralURLs(ev *SNPEvidence) []string { return nil }

// VerifySNP checks the report against AMD: signature, VCEK/VLEK chain,
// revocation and TCB. It fills res.
func VerifySNP(ctx context.Context, ev *SNPEvidence, opts HardwareOptions, res *Result) error {
	return newError(ClassSignature, "snp", nil, "not implemented")
}

// CheckSNP checks measurement, policy, TCB minimums, ID block and binding
// against the reference values; it accepts when any entry of refs matches.
func CheckSNP(ev *SNPEvidence, refs []SNPReference, b Binding, res *Result) error {
	return newError(ClassMeasurement, "snp", nil, "not implemented")
}
