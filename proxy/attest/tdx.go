package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	"google.golang.org/protobuf/proto"
)

// maxTDXQuoteSize bounds the input we hand to the vendor parser. Real quotes
// are about 5 KiB (three PEM certificates dominate); anything near this limit
// is not a quote.
const maxTDXQuoteSize = 64 << 10

// TDXEvidence is a parsed TDX quote (v4, or v5 with a TD 1.0 or TD 1.5
// body) with the PCK chain it carries.
type TDXEvidence struct {
	// Quote is the quote as the vendor library models it. For a v5 quote it
	// is the v4-shaped view: the header (version field 4), the TD 1.0 part of
	// the body and the signature data; Version, BodyType, TeeTcbSvn2 and
	// MrServiceTD carry the rest.
	Quote *tdxpb.QuoteV4
	Raw   []byte // the quote in Intel's binary (ABI) form, exactly as received
	// Version is the quote format version (4 or 5).
	Version int
	// BodyType is the v5 body type: 2 (TDX 1.0) or 3 (TDX 1.5); 0 for v4,
	// whose body is always a TDX 1.0 body.
	BodyType int
	// TeeTcbSvn2 and MrServiceTD are the TDX 1.5 body fields (v5 body type
	// 3 only): the TEE TCB SVN of the TDX module running now (it differs
	// from TEE_TCB_SVN after a TD-preserving module update) and the
	// measurement of the service TD bound to this TD (zero when none).
	TeeTcbSvn2, MrServiceTD []byte
	PCKChain                []*x509.Certificate // leaf, intermediate, root as carried in the quote
	FMSPC                   string              // hex, from the PCK leaf's SGX extension
	PCEID                   string              // hex
	CA                      string              // "platform" or "processor", from the PCK issuer
	// PIID is the platform instance ID (hex) from the PCK leaf; empty for
	// processor-CA certificates, which do not carry it.
	PIID string
	// SGXType is the PCK leaf's SGX Type (SGXTypeStandard, ...); nil when
	// the certificate does not state it.
	SGXType *int
	// DynamicPlatform, CachedKeys and SMTEnabled are the PCK leaf's
	// Configuration entries; nil when the certificate does not state them
	// (older leaves, Processor-CA leaves).
	DynamicPlatform, CachedKeys, SMTEnabled *bool
	// TCBEvaluationDataNumber is set by VerifyTDX from the TCB info it
	// checked; 0 when collateral was skipped.
	TCBEvaluationDataNumber int

	pckExt    *pcs.PckExtensions
	signedLen int // v5: bytes of Raw covered by the quote signature
}

// ParseTDXQuote parses a v4 or v5 TDX quote in Intel's binary form; errors
// are ClassMalformed.
func ParseTDXQuote(raw []byte) (*TDXEvidence, error) {
	if len(raw) > maxTDXQuoteSize {
		return nil, newError(ClassMalformed, "tdx", nil, "quote is %d bytes, more than the %d accepted", len(raw), maxTDXQuoteSize)
	}
	if len(raw) >= 2 && binary.LittleEndian.Uint16(raw[0:2]) == tdxQuoteVersionV5 {
		return parseTDXQuoteV5Evidence(raw)
	}
	if err := checkTDXLayout(raw); err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "quote layout")
	}
	q, err := quoteToProto(raw)
	if err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "parse QuoteV4")
	}
	ev, err := newTDXEvidence(q, bytes.Clone(raw))
	if err != nil {
		return nil, err
	}
	ev.Version = 4
	return ev, nil
}

// parseTDXQuoteV5Evidence parses a v5 quote through its v4-shaped view.
func parseTDXQuoteV5Evidence(raw []byte) (*TDXEvidence, error) {
	view, v5, err := parseTDXQuoteV5(raw)
	if err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "quote v5 layout")
	}
	if err := checkTDXLayout(view); err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "quote v5 signature data layout")
	}
	q, err := quoteToProto(view)
	if err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "parse quote v5 signature data")
	}
	ev, err := newTDXEvidence(q, bytes.Clone(raw))
	if err != nil {
		return nil, err
	}
	ev.Version, ev.BodyType = tdxQuoteVersionV5, int(v5.bodyType)
	ev.TeeTcbSvn2, ev.MrServiceTD = v5.svn2, v5.serviceTD
	ev.signedLen = v5.signedLen
	return ev, nil
}

// ParseTDXQuoteProto parses a protobuf-marshalled QuoteV4 as carried in
// raw_attestation_doc; errors are ClassMalformed.
func ParseTDXQuoteProto(b []byte) (*TDXEvidence, error) {
	if len(b) > maxTDXQuoteSize {
		return nil, newError(ClassMalformed, "tdx", nil, "quote is %d bytes, more than the %d accepted", len(b), maxTDXQuoteSize)
	}
	var q tdxpb.QuoteV4
	if err := proto.Unmarshal(b, &q); err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "decode QuoteV4 protobuf")
	}
	if err := abi.CheckQuoteV4(&q); err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "QuoteV4 protobuf fields")
	}
	raw, err := quoteToAbi(&q)
	if err != nil {
		return nil, newError(ClassMalformed, "tdx", err, "re-encode QuoteV4 protobuf")
	}
	// The protobuf carries its own size fields, which nothing above checks
	// against the content. Parsing the re-encoded bytes proves that Raw is a
	// well-formed quote and that Quote is exactly what Raw says.
	return ParseTDXQuote(raw)
}

// quoteToProto runs the vendor parser. checkTDXLayout has already bounded
// every offset it reads, but the parser indexes without bounds checks, so a
// panic is still turned into an error rather than trusted never to happen.
func quoteToProto(raw []byte) (q *tdxpb.QuoteV4, err error) {
	defer func() {
		if r := recover(); r != nil {
			q, err = nil, fmt.Errorf("vendor parser panicked: %v", r)
		}
	}()
	v, err := abi.QuoteToProto(raw)
	if err != nil {
		return nil, err
	}
	q, ok := v.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("unexpected quote type %T", v)
	}
	return q, nil
}

func quoteToAbi(q *tdxpb.QuoteV4) (raw []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("vendor encoder panicked: %v", r)
		}
	}()
	return abi.QuoteToAbiBytes(q)
}

// checkTDXLayout walks the length fields of a QuoteV4 (Intel TDX DCAP quote
// layout) and rejects any that point outside the buffer, before the vendor
// parser slices by them.
func checkTDXLayout(raw []byte) error {
	const (
		signedSizeOff  = 0x278
		signedOff      = 0x27C
		authFixed      = 0x80 // signature + attestation key
		certHdr        = 6    // type (2) + size (4)
		qeReportAndSig = 0x1C0
	)
	if len(raw) < abi.QuoteMinSize {
		return fmt.Errorf("quote is %d bytes, shorter than the minimum %d", len(raw), abi.QuoteMinSize)
	}
	if v := binary.LittleEndian.Uint16(raw[0:2]); v != abi.QuoteVersion {
		return fmt.Errorf("quote version %d, only version %d is supported", v, abi.QuoteVersion)
	}
	signed := uint64(binary.LittleEndian.Uint32(raw[signedSizeOff:signedOff]))
	if signed > uint64(len(raw)-signedOff) {
		return fmt.Errorf("signed data size %d exceeds the %d bytes present", signed, len(raw)-signedOff)
	}
	sd := raw[signedOff : signedOff+int(signed)]
	if len(sd) < authFixed+certHdr {
		return fmt.Errorf("signed data is %d bytes, too short", len(sd))
	}
	cert := sd[authFixed+certHdr:]
	if n := uint64(binary.LittleEndian.Uint32(sd[authFixed+2 : authFixed+6])); n != uint64(len(cert)) {
		return fmt.Errorf("certification data size %d, but %d bytes present", n, len(cert))
	}
	if len(cert) < qeReportAndSig+2 {
		return fmt.Errorf("QE report certification data is %d bytes, too short", len(cert))
	}
	auth := int(binary.LittleEndian.Uint16(cert[qeReportAndSig : qeReportAndSig+2]))
	rest := len(cert) - (qeReportAndSig + 2)
	if auth+certHdr > rest {
		return fmt.Errorf("QE auth data size %d leaves no room for the PCK chain header", auth)
	}
	return nil
}

// newTDXEvidence extracts the PCK chain and its SGX extension values from a
// parsed quote.
func newTDXEvidence(q *tdxpb.QuoteV4, raw []byte) (*TDXEvidence, error) {
	chainPEM := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	chain, err := parsePCKChain(chainPEM)
	if err != nil {
		return nil, newError(ClassMalformed, "PCK chain", err, "parse the PCK certificate chain in the quote")
	}
	ext, err := pckExtensions(chain[0])
	if err != nil {
		return nil, newError(ClassMalformed, "PCK chain", err, "read the SGX extension of the PCK certificate")
	}
	plat, err := parsePCKExtensions(sgxExtension(chain[0]))
	if err != nil {
		return nil, newError(ClassMalformed, "PCK chain", err, "read the platform values in the SGX extension of the PCK certificate")
	}
	ev := &TDXEvidence{
		Quote:           q,
		Raw:             raw,
		PCKChain:        chain,
		FMSPC:           ext.FMSPC,
		PCEID:           ext.PCEID,
		PIID:            plat.PIID,
		SGXType:         plat.SGXType,
		DynamicPlatform: plat.DynamicPlatform,
		CachedKeys:      plat.CachedKeys,
		SMTEnabled:      plat.SMTEnabled,
		pckExt:          ext,
	}
	switch chain[0].Issuer.CommonName {
	case "Intel SGX PCK Platform CA":
		ev.CA = "platform"
	case "Intel SGX PCK Processor CA":
		ev.CA = "processor"
	default:
		return nil, newError(ClassMalformed, "PCK chain", nil, "PCK certificate issuer %q is neither the Platform nor the Processor CA", chain[0].Issuer.CommonName)
	}
	return ev, nil
}

// pckExtensions guards the vendor extension reader, which type-asserts
// attacker-supplied ASN.1.
func pckExtensions(c *x509.Certificate) (ext *pcs.PckExtensions, err error) {
	defer func() {
		if r := recover(); r != nil {
			ext, err = nil, fmt.Errorf("vendor extension parser panicked: %v", r)
		}
	}()
	ext, err = pcs.PckCertificateExtensions(c)
	if err == nil && (len(ext.FMSPC) != 12 || len(ext.PCEID) != 4 || len(ext.TCB.CPUSvnComponents) != 16) {
		err = fmt.Errorf("SGX extension lacks FMSPC, PCEID or TCB")
	}
	return ext, err
}

// parsePCKChain decodes certification data type 5: exactly three PEM
// certificates (leaf, intermediate, root), optionally NUL-terminated.
func parsePCKChain(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for len(out) < 3 {
		blk, r := pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("found %d PEM certificates, want 3 (leaf, intermediate, root)", len(out))
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(out), blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out), err)
		}
		out = append(out, c)
		rest = r
	}
	if len(bytes.Trim(rest, "\x00\r\n\t ")) != 0 {
		return nil, fmt.Errorf("%d unexpected bytes after the third certificate", len(rest))
	}
	return out, nil
}

// sgxExtension returns the DER value of c's SGX extension, nil if absent.
func sgxExtension(c *x509.Certificate) []byte {
	for _, e := range c.Extensions {
		if e.Id.Equal(pcs.OidSgxExtension) {
			return e.Value
		}
	}
	return nil
}

// TDXCollateralURLs lists the Intel PCS URLs whose responses verifying ev
// needs: TCB info, QE identity, PCK CRL and the root CA CRL.
func TDXCollateralURLs(ev *TDXEvidence) []string {
	if ev == nil || ev.FMSPC == "" || ev.CA == "" {
		return nil
	}
	return []string{pcs.TcbInfoURL(ev.FMSPC), pcs.QeIdentityURL(), pcs.PckCrlURL(ev.CA), intelRootCRLURL}
}

// intelRootCRLURL is where Intel publishes the SGX Root CA CRL (the CRL
// distribution point of the root certificate).
const intelRootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
