package attest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
)

// maxSNPEvidenceSize bounds parsed SNP evidence. A report with ARK, ASK,
// VCEK and a CRL is well under 16 KiB; the bound only stops a hostile
// backend from making us allocate without limit.
const maxSNPEvidenceSize = 1 << 20

// SNPCRLExtrasKey is the CertificateChain.Extras key under which Contrast
// carries the AMD product CRL (DER) next to the report.
const SNPCRLExtrasKey = "00569ee4-e480-4fba-bbf4-45b629901180"

// SNPEvidence is a parsed SEV-SNP attestation: the report and the
// certificate chain (VCEK or VLEK, optionally ASK/ARK and a CRL) it carries.
type SNPEvidence struct {
	Attestation *spb.Attestation
	Raw         []byte // the input bytes as given
	// Product is "Milan", "Genoa" or "Turin", taken from the report's CPUID
	// (v3+) or the endorsement certificate (v2). Empty when the evidence does
	// not say; a caller may then set it from the reference values before
	// SNPCollateralURLs and VerifySNP.
	Product string

	report []byte // the report in ABI form (abi.ReportSize bytes), the signed object
}

// ParseSNPReport parses a raw report (0x4A0 bytes), optionally followed by
// the extended-report certificate table. Errors are ClassMalformed.
func ParseSNPReport(raw []byte) (*SNPEvidence, error) {
	silenceVendorLogs() // the table parser warns on stdout about missing VCEKs
	if len(raw) < abi.ReportSize {
		return nil, newError(ClassMalformed, "snp", nil, "report is %d bytes, want at least %d", len(raw), abi.ReportSize)
	}
	if len(raw) > maxSNPEvidenceSize {
		return nil, newError(ClassMalformed, "snp", nil, "evidence is %d bytes, more than the %d allowed", len(raw), maxSNPEvidenceSize)
	}
	rep, err := abi.ReportToProto(raw[:abi.ReportSize])
	if err != nil {
		return nil, newError(ClassMalformed, "snp", err, "parse SEV-SNP report")
	}
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	if certs := raw[abi.ReportSize:]; len(certs) > 0 {
		// The library's table parser trusts offset+length not to overflow,
		// so check every entry's range first: a crafted table must fail,
		// not panic.
		if err := checkSNPCertTable(certs); err != nil {
			return nil, newError(ClassMalformed, "snp", err, "parse certificate table")
		}
		var table abi.CertTable
		if err := table.Unmarshal(certs); err != nil {
			return nil, newError(ClassMalformed, "snp", err, "parse certificate table")
		}
		chain = table.Proto()
	}
	att := &spb.Attestation{Report: rep, CertificateChain: chain}
	return newSNPEvidence(att, raw, append([]byte(nil), raw[:abi.ReportSize]...))
}

// checkSNPCertTable validates the GUID table header: every entry must lie
// inside the data.
func checkSNPCertTable(certs []byte) error {
	entries, err := abi.ParseSnpCertTableHeader(certs)
	if err != nil {
		return err
	}
	for i, e := range entries {
		if uint64(e.Offset)+uint64(e.Length) > uint64(len(certs)) {
			return newError(ClassMalformed, "snp", nil, "certificate table entry %d (offset %d, length %d) exceeds the %d-byte table", i, e.Offset, e.Length, len(certs))
		}
	}
	return nil
}

// ParseSNPAttestationProto parses a protobuf-marshalled sevsnp.Attestation as
// carried in raw_attestation_doc. Errors are ClassMalformed.
func ParseSNPAttestationProto(b []byte) (*SNPEvidence, error) {
	silenceVendorLogs()
	if len(b) > maxSNPEvidenceSize {
		return nil, newError(ClassMalformed, "snp", nil, "evidence is %d bytes, more than the %d allowed", len(b), maxSNPEvidenceSize)
	}
	var att spb.Attestation
	if err := proto.Unmarshal(b, &att); err != nil {
		return nil, newError(ClassMalformed, "snp", err, "decode SEV-SNP attestation protobuf")
	}
	if att.Report == nil {
		return nil, newError(ClassMalformed, "snp", nil, "attestation has no report")
	}
	// Round-trip through the ABI form: the signature covers the ABI bytes,
	// and ReportToProto enforces the reserved (must-be-zero) fields and the
	// policy format that the protobuf cannot.
	report, err := abi.ReportToAbiBytes(att.Report)
	if err != nil {
		return nil, newError(ClassMalformed, "snp", err, "report fields")
	}
	rep, err := abi.ReportToProto(report)
	if err != nil {
		return nil, newError(ClassMalformed, "snp", err, "parse SEV-SNP report")
	}
	chain := att.CertificateChain
	if chain == nil {
		chain = &spb.CertificateChain{}
	}
	// The library turns Extras keys into GUIDs with uuid.MustParse, which
	// panics on anything else; refuse such keys here.
	for k := range chain.Extras {
		if _, err := uuid.Parse(k); err != nil {
			return nil, newError(ClassMalformed, "snp", err, "certificate chain extra %q is not a GUID", k)
		}
	}
	if chain.Extras == nil {
		chain.Extras = map[string][]byte{}
	}
	out := &spb.Attestation{Report: rep, CertificateChain: chain}
	return newSNPEvidence(out, b, report)
}

// newSNPEvidence finishes parsing: signer and product.
func newSNPEvidence(att *spb.Attestation, raw, report []byte) (*SNPEvidence, error) {
	ev := &SNPEvidence{Attestation: att, Raw: raw, report: report}
	if _, err := abi.ParseSignerInfo(att.Report.GetSignerInfo()); err != nil {
		return nil, newError(ClassMalformed, "snp", err, "report signer info")
	}
	p, err := snpProduct(att)
	if err != nil {
		return nil, err
	}
	ev.Product = p
	return ev, nil
}

// snpProduct determines the product line. v3+ reports carry the CPU
// family/model, which is authoritative; v2 reports only have the VCEK's
// productName extension (or the host-supplied extra platform info).
func snpProduct(att *spb.Attestation) (string, error) {
	rep := att.GetReport()
	if rep.GetVersion() >= abi.ReportVersion3 {
		fms := rep.GetCpuid1EaxFms()
		p := kds.ProductLineFromFms(fms)
		if !knownSNPProduct(p) {
			return "", newError(ClassMalformed, "snp", nil, "report CPUID 0x%08x is not a supported AMD product (Milan, Genoa, Turin)", fms)
		}
		return p, nil
	}
	chain := att.GetCertificateChain()
	info, _ := abi.ParseSignerInfo(rep.GetSignerInfo())
	der := chain.GetVcekCert()
	if info.SigningKey == abi.VlekReportSigner {
		der = chain.GetVlekCert()
	}
	if len(der) > 0 {
		if cert, err := x509.ParseCertificate(der); err == nil {
			if exts, err := kds.CertificateExtensions(cert, info.SigningKey); err == nil {
				if prod, err := kds.ParseProductName(exts.ProductName, info.SigningKey); err == nil {
					if p := kds.ProductLine(prod); knownSNPProduct(p) {
						return p, nil
					}
				}
			}
		}
	}
	if blob, ok := chain.GetExtras()[abi.ExtraPlatformInfoGUID]; ok {
		if pi, err := abi.ParseExtraPlatformInfo(blob); err == nil {
			if p := kds.ProductLine(abi.SevProductFromCpuid1Eax(pi.Cpuid1Eax)); knownSNPProduct(p) {
				return p, nil
			}
		}
	}
	return "", nil
}

func knownSNPProduct(p string) bool {
	return p == "Milan" || p == "Genoa" || p == "Turin"
}

// reportBytes returns the report in ABI form, rebuilding it for evidence
// that was not made by the parsers.
func (ev *SNPEvidence) reportBytes() ([]byte, error) {
	if len(ev.report) == abi.ReportSize {
		return ev.report, nil
	}
	b, err := abi.ReportToAbiBytes(ev.Attestation.GetReport())
	if err != nil {
		return nil, newError(ClassMalformed, "snp", err, "report fields")
	}
	return b, nil
}

// signer returns which key kind signed the report.
func (ev *SNPEvidence) signer() abi.ReportSigner {
	info, _ := abi.ParseSignerInfo(ev.Attestation.GetReport().GetSignerInfo())
	return info.SigningKey
}

// checkSNPEvidence rejects evidence that did not come from the parsers.
func checkSNPEvidence(ev *SNPEvidence) error {
	if ev == nil || ev.Attestation == nil || ev.Attestation.Report == nil {
		return newError(ClassMalformed, "snp", nil, "no SEV-SNP report")
	}
	return nil
}

// SNPCollateralURLs lists the AMD KDS URLs whose responses verifying ev
// needs: the VCEK for the chip and reported TCB (unless the chip ID is
// masked), the product cert_chain and the product CRL. It returns nil when
// the product line is unknown.
func SNPCollateralURLs(ev *SNPEvidence) []string {
	if checkSNPEvidence(ev) != nil || !knownSNPProduct(ev.Product) {
		return nil
	}
	rep := ev.Attestation.Report
	info, _ := abi.ParseSignerInfo(rep.GetSignerInfo())
	var urls []string
	if info.SigningKey == abi.VcekReportSigner && !info.MaskChipKey {
		urls = append(urls, snpVCEKURL(ev.Product, rep.GetChipId(), rep.GetReportedTcb()))
	}
	return append(urls,
		kds.ProductCertChainURL(info.SigningKey, ev.Product),
		kds.CrlLinkByKey(ev.Product, info.SigningKey))
}

// VerifySNP checks the report against AMD: VCEK/VLEK chain to the AMD roots
// (ClassChain; a VCEK available nowhere is ClassCollateral), the report
// signature (ClassSignature) and, unless opts.SkipCollateral, revocation
// against a fresh ARK-signed CRL (ClassRevoked, ClassCollateral,
// ClassCollateralStale). It fills res as far as it gets.
func VerifySNP(ctx context.Context, ev *SNPEvidence, opts HardwareOptions, res *Result) error {
	silenceVendorLogs()
	if res == nil {
		res = &Result{}
	}
	res.Platform = PlatformSNP
	if err := checkSNPEvidence(ev); err != nil {
		return res.reject(err)
	}
	report, err := ev.reportBytes()
	if err != nil {
		return res.reject(err)
	}
	sum := sha256.Sum256(report)
	res.EvidenceSHA256 = hex.EncodeToString(sum[:])
	res.Product = ev.Product
	fillSNPValues(ev.Product, ev.Attestation.Report, res)
	if err := verifySNPHardware(ctx, ev, report, opts, res); err != nil {
		return res.reject(err)
	}
	return nil
}
