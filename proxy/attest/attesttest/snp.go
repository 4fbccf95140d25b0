package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
)

// SNPCRLExtrasKey is the CertificateChain.Extras key under which Contrast
// carries the AMD CRL (mirrors attest.SNPCRLExtrasKey; attesttest cannot
// import attest).
const SNPCRLExtrasKey = "00569ee4-e480-4fba-bbf4-45b629901180"

// SNPCRLValidity is the span from a test CRL's ThisUpdate to its NextUpdate.
const SNPCRLValidity = 7 * 24 * time.Hour

// SNPDefaultPolicy is the guest policy used when SNPReportOptions.Policy is
// zero: ABI 0.0, SMT allowed, reserved bit 17 set, no debug.
const SNPDefaultPolicy uint64 = 0x30000

// snpProductInfo is what a product line looks like: CPUID family/model/
// stepping (v3+ reports) and the VCEK productName extension.
var snpProductInfo = map[string]struct {
	family, model, stepping byte
	name                    string
}{
	"Milan": {0x19, 0x01, 1, "Milan-B1"},
	"Genoa": {0x19, 0x11, 1, "Genoa-B1"},
	"Turin": {0x1A, 0x02, 0, "Turin"}, // Turin VCEKs name the product line alone
}

// SNPAuthority is a throwaway AMD key hierarchy for one product line and one
// chip: an RSA-PSS ARK and ASK and an ECDSA P-384 VCEK, certified like AMD
// KDS certifies them. Keys are generated once; VCEK certificates are issued
// per reported TCB on demand. Safe for concurrent use.
type SNPAuthority struct {
	product string
	info    struct {
		family, model, stepping byte
		name                    string
	}
	now            time.Time
	arkKey, askKey *rsa.PrivateKey
	vcekKey        *ecdsa.PrivateKey
	ark, ask       *x509.Certificate
	chipID         [abi.ChipIDSize]byte
	tcb            uint64

	mu    sync.Mutex
	vceks map[uint64]*x509.Certificate // by reported TCB
}

// NewSNPAuthority creates test ARK, ASK and VCEK keys for product ("Milan",
// "Genoa" or "Turin"), with certificates valid from an hour before now.
// RSA keys are 2048 bits (AMD uses 4096) to keep tests fast.
func NewSNPAuthority(product string, now time.Time) (*SNPAuthority, error) {
	info, ok := snpProductInfo[product]
	if !ok {
		return nil, fmt.Errorf("unknown AMD product %q", product)
	}
	a := &SNPAuthority{product: product, now: now, vceks: map[uint64]*x509.Certificate{}}
	a.info = info
	var err error
	if a.arkKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, fmt.Errorf("generate ARK key: %w", err)
	}
	if a.askKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, fmt.Errorf("generate ASK key: %w", err)
	}
	if a.vcekKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, fmt.Errorf("generate VCEK key: %w", err)
	}
	if _, err := rand.Read(a.chipID[:]); err != nil {
		return nil, fmt.Errorf("chip ID: %w", err)
	}
	a.tcb = SNPTCB(4, 0, 22, 213)
	if product == "Turin" {
		// Turin VCEKs are indexed by the first 8 bytes of CHIP_ID; the
		// rest of the report's CHIP_ID is zero.
		clear(a.chipID[8:])
		a.tcb = SNPTurinTCB(1, 4, 0, 22, 213)
	}
	crl := kds.CrlLinkByRole(product, "ARK")
	arkTmpl := &x509.Certificate{
		SerialNumber:          snpSerial(),
		Subject:               snpAMDName("ARK-" + product),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(25, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		CRLDistributionPoints: []string{crl},
	}
	if a.ark, err = snpIssue(arkTmpl, arkTmpl, &a.arkKey.PublicKey, a.arkKey); err != nil {
		return nil, fmt.Errorf("ARK: %w", err)
	}
	askTmpl := &x509.Certificate{
		SerialNumber:          snpSerial(),
		Subject:               snpAMDName("SEV-" + product),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(25, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		CRLDistributionPoints: []string{crl},
	}
	if a.ask, err = snpIssue(askTmpl, a.ark, &a.askKey.PublicKey, a.arkKey); err != nil {
		return nil, fmt.Errorf("ASK: %w", err)
	}
	if _, err := a.VCEKFor(a.tcb); err != nil {
		return nil, err
	}
	return a, nil
}

// SNPTCB composes a TCB_VERSION from bootloader, TEE, SNP and microcode SPLs.
func SNPTCB(bl, tee, snp, ucode uint8) uint64 {
	return uint64(ucode)<<56 | uint64(snp)<<48 | uint64(tee)<<8 | uint64(bl)
}

// SNPTurinTCB composes a Turin TCB_VERSION: FMC, bootloader, TEE and SNP
// SPLs in bytes 0-3, microcode in byte 7.
func SNPTurinTCB(fmc, bl, tee, snp, ucode uint8) uint64 {
	return uint64(ucode)<<56 | uint64(snp)<<24 | uint64(tee)<<16 | uint64(bl)<<8 | uint64(fmc)
}

// SNPVCEKURL is the AMD KDS URL of a VCEK, spelled independently of the
// verifier's so tests cross-check it: Turin indexes by the first 8 bytes
// of CHIP_ID and adds fmcSPL.
func SNPVCEKURL(product string, chipID []byte, tcb uint64) string {
	if product != "Turin" {
		return kds.VCEKCertURL(product, chipID, kds.TCBVersion(tcb))
	}
	return fmt.Sprintf("https://kdsintf.amd.com/vcek/v1/Turin/%x?fmcSPL=%d&blSPL=%d&teeSPL=%d&snpSPL=%d&ucodeSPL=%d",
		chipID[:8], byte(tcb), byte(tcb>>8), byte(tcb>>16), byte(tcb>>24), byte(tcb>>56))
}

func snpSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	return n.Add(n, big.NewInt(1))
}

// snpAMDName is the subject/issuer DN the verifier insists on for AMD certs.
func snpAMDName(cn string) pkix.Name {
	return pkix.Name{
		Country:            []string{"US"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
	}
}

func snpIssue(tmpl, parent *x509.Certificate, pub any, key *rsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// ARK returns the test AMD root key certificate (self-signed).
func (a *SNPAuthority) ARK() *x509.Certificate { return a.ark }

// ASK returns the test AMD signing key certificate (signed by the ARK).
func (a *SNPAuthority) ASK() *x509.Certificate { return a.ask }

// VCEK returns the VCEK certificate for the authority's default TCB.
func (a *SNPAuthority) VCEK() *x509.Certificate {
	c, _ := a.VCEKFor(a.tcb)
	return c
}

// ChipID returns the chip ID the VCEKs are issued for.
func (a *SNPAuthority) ChipID() [abi.ChipIDSize]byte { return a.chipID }

// TCB returns the authority's default TCB_VERSION (current = reported).
func (a *SNPAuthority) TCB() uint64 { return a.tcb }

// Product returns the product line ("Milan", "Genoa", "Turin").
func (a *SNPAuthority) Product() string { return a.product }

// VCEKFor returns the VCEK certificate for reported TCB tcb, issuing it on
// first use: KDS issues one certificate per chip and TCB, same key.
func (a *SNPAuthority) VCEKFor(tcb uint64) (*x509.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.vceks[tcb]; ok {
		return c, nil
	}
	exts, err := snpVCEKExtensions(a.info.name, a.chipID[:], tcb)
	if a.product == "Turin" {
		exts, err = snpTurinVCEKExtensions(a.chipID[:8], tcb)
	}
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:       snpSerial(),
		Subject:            snpAMDName("SEV-VCEK"),
		NotBefore:          a.now.Add(-time.Hour),
		NotAfter:           a.now.AddDate(7, 0, 0),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		// Only the KDS extensions (and the AKI CreateCertificate adds):
		// the verifier rejects any other extension on a VCEK.
		ExtraExtensions: exts,
	}
	c, err := snpIssue(tmpl, a.ask, &a.vcekKey.PublicKey, a.askKey)
	if err != nil {
		return nil, fmt.Errorf("VCEK: %w", err)
	}
	a.vceks[tcb] = c
	return c, nil
}

// extensionAppender returns a function that DER-encodes v and appends it to
// *exts as extension id.
func extensionAppender(exts *[]pkix.Extension) func(id asn1.ObjectIdentifier, v any, params string) error {
	return func(id asn1.ObjectIdentifier, v any, params string) error {
		b, err := asn1.MarshalWithParams(v, params)
		if err != nil {
			return fmt.Errorf("encode extension %v: %w", id, err)
		}
		*exts = append(*exts, pkix.Extension{Id: id, Value: b})
		return nil
	}
}

// snpVCEKExtensions encodes the AMD KDS extensions: struct version, product
// name (IA5String), the eight SPL integers and the hwid (OCTET STRING).
func snpVCEKExtensions(productName string, hwid []byte, tcb uint64) ([]pkix.Extension, error) {
	parts := kds.DecomposeTCBVersion(kds.TCBVersion(tcb))
	var exts []pkix.Extension
	add := extensionAppender(&exts)
	ints := []struct {
		id asn1.ObjectIdentifier
		v  uint8
	}{
		{kds.OidStructVersion, 0},
		{kds.OidBlSpl, parts.BlSpl}, {kds.OidTeeSpl, parts.TeeSpl}, {kds.OidSnpSpl, parts.SnpSpl},
		{kds.OidSpl4, parts.Spl4}, {kds.OidSpl5, parts.Spl5}, {kds.OidSpl6, parts.Spl6}, {kds.OidSpl7, parts.Spl7},
		{kds.OidUcodeSpl, parts.UcodeSpl},
	}
	if err := add(kds.OidProductName1, productName, "ia5"); err != nil {
		return nil, err
	}
	for _, e := range ints {
		if err := add(e.id, int(e.v), ""); err != nil {
			return nil, err
		}
	}
	if err := add(kds.OidHwid, hwid, ""); err != nil {
		return nil, err
	}
	return exts, nil
}

// OidFmcSpl is the Turin VCEK extension for the FMC SPL, which
// go-sev-guest v0.15.0 does not know.
var OidFmcSpl = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 9}

// snpTurinVCEKExtensions encodes the KDS extensions the way AMD KDS does for
// Turin (as in genuine Turin VCEKs): struct version, productName "Turin",
// fmcSPL, bl/tee/snp SPLs, spl5-7 (no spl4), ucode SPL and an 8-byte hwID
// as a bare value.
func snpTurinVCEKExtensions(hwid []byte, tcb uint64) ([]pkix.Extension, error) {
	var exts []pkix.Extension
	add := extensionAppender(&exts)
	if err := add(kds.OidStructVersion, 1, ""); err != nil {
		return nil, err
	}
	if err := add(kds.OidProductName1, "Turin", "ia5"); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		id asn1.ObjectIdentifier
		v  byte
	}{
		{OidFmcSpl, byte(tcb)}, {kds.OidBlSpl, byte(tcb >> 8)}, {kds.OidTeeSpl, byte(tcb >> 16)}, {kds.OidSnpSpl, byte(tcb >> 24)},
		{kds.OidSpl5, 0}, {kds.OidSpl6, 0}, {kds.OidSpl7, 0}, {kds.OidUcodeSpl, byte(tcb >> 56)},
	} {
		if err := add(e.id, int(e.v), ""); err != nil {
			return nil, err
		}
	}
	exts = append(exts, pkix.Extension{Id: kds.OidHwid, Value: append([]byte(nil), hwid...)})
	return exts, nil
}

// SNPReportOptions are the report fields a test controls. Zero values mean:
// Policy SNPDefaultPolicy, TCB the authority's (current = reported =
// committed), LaunchTCB = TCB, ChipID the authority's, Version 3.
type SNPReportOptions struct {
	ReportData       [64]byte
	HostData         [32]byte
	Measurement      [48]byte
	Policy           uint64
	IDKeyDigest      [48]byte
	TCB              uint64
	LaunchTCB        uint64
	PlatformInfo     uint64
	VMPL             uint32
	ChipID           [64]byte
	Version          uint32
	MitigationVector uint64 // launch = current; only meaningful for v5 reports
}

// Report returns a signed report in ABI form (abi.ReportSize bytes) and the
// VCEK for its reported TCB.
func (a *SNPAuthority) Report(o SNPReportOptions) ([]byte, *x509.Certificate, error) {
	tcb := o.TCB
	if tcb == 0 {
		tcb = a.tcb
	}
	launch := o.LaunchTCB
	if launch == 0 {
		launch = tcb
	}
	policy := o.Policy
	if policy == 0 {
		policy = SNPDefaultPolicy
	}
	version := o.Version
	if version == 0 {
		version = abi.ReportVersion3
	}
	chip := o.ChipID
	if chip == [64]byte{} {
		chip = a.chipID
	}
	familyID, imageID := make([]byte, 16), make([]byte, 16)
	familyID[0], imageID[0] = 0x01, 0x02 // as in Contrast's ID block
	reportID := make([]byte, 32)
	if _, err := rand.Read(reportID); err != nil {
		return nil, nil, err
	}
	r := &spb.Report{
		Version: version, GuestSvn: 2, Policy: policy,
		FamilyId: familyID, ImageId: imageID, Vmpl: o.VMPL,
		SignatureAlgo: abi.SignEcdsaP384Sha384,
		CurrentTcb:    tcb, PlatformInfo: o.PlatformInfo,
		ReportData: o.ReportData[:], Measurement: o.Measurement[:], HostData: o.HostData[:],
		IdKeyDigest: o.IDKeyDigest[:], AuthorKeyDigest: make([]byte, 48),
		ReportId: reportID, ReportIdMa: make([]byte, 32),
		ReportedTcb: tcb, ChipId: chip[:], CommittedTcb: tcb, LaunchTcb: launch,
		CurrentMajor: 1, CurrentMinor: 55, CurrentBuild: 21,
		CommittedMajor: 1, CommittedMinor: 55, CommittedBuild: 21,
		LaunchMitVector: o.MitigationVector, CurrentMitVector: o.MitigationVector,
		Signature: make([]byte, abi.SignatureSize),
	}
	if version >= abi.ReportVersion3 {
		r.Cpuid1EaxFms = abi.FmsToCpuid1Eax(a.info.family, a.info.model, a.info.stepping)
	}
	raw, err := abi.ReportToAbiBytes(r)
	if err != nil {
		return nil, nil, fmt.Errorf("encode report: %w", err)
	}
	digest := sha512.Sum384(abi.SignedComponent(raw))
	rs, ss, err := ecdsa.Sign(rand.Reader, a.vcekKey, digest[:])
	if err != nil {
		return nil, nil, fmt.Errorf("sign report: %w", err)
	}
	if err := abi.SetSignature(rs, ss, raw); err != nil {
		return nil, nil, err
	}
	vcek, err := a.VCEKFor(tcb)
	if err != nil {
		return nil, nil, err
	}
	return raw, vcek, nil
}

// Attestation returns a protobuf-marshalled sevsnp.Attestation as Contrast
// puts it in raw_attestation_doc: report, VCEK, ASK, ARK and a CRL (valid
// from the authority's creation time) in the extras.
func (a *SNPAuthority) Attestation(o SNPReportOptions) ([]byte, error) {
	return a.attestation(o, true)
}

// AttestationWithoutCRL is Attestation with no CRL in the extras, as a
// chain whose CRL must come from collateral.
func (a *SNPAuthority) AttestationWithoutCRL(o SNPReportOptions) ([]byte, error) {
	return a.attestation(o, false)
}

func (a *SNPAuthority) attestation(o SNPReportOptions, withCRL bool) ([]byte, error) {
	raw, vcek, err := a.Report(o)
	if err != nil {
		return nil, err
	}
	rep, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("decode own report: %w", err)
	}
	chain := &spb.CertificateChain{VcekCert: vcek.Raw, AskCert: a.ask.Raw, ArkCert: a.ark.Raw, Extras: map[string][]byte{}}
	if withCRL {
		crl, err := a.CRL(a.now)
		if err != nil {
			return nil, err
		}
		chain.Extras[SNPCRLExtrasKey] = crl
	}
	return proto.Marshal(&spb.Attestation{Report: rep, CertificateChain: chain})
}

// RawReport returns the report followed by the extended-report certificate
// table (ARK, ASK, VCEK), as the guest's extended report request yields it.
func (a *SNPAuthority) RawReport(o SNPReportOptions) ([]byte, error) {
	raw, vcek, err := a.Report(o)
	if err != nil {
		return nil, err
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.ArkGUID), RawCert: a.ark.Raw},
		{GUID: uuid.MustParse(abi.AskGUID), RawCert: a.ask.Raw},
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: vcek.Raw},
	}}
	return append(raw, table.Marshal()...), nil
}

// CRL returns a DER CRL signed by the ARK, issued at now and valid for
// SNPCRLValidity, revoking the given certificates.
func (a *SNPAuthority) CRL(now time.Time, revoked ...*x509.Certificate) ([]byte, error) {
	tmpl := &x509.RevocationList{
		Number:             big.NewInt(now.Unix()),
		ThisUpdate:         now,
		NextUpdate:         now.Add(SNPCRLValidity),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, a.ark, a.arkKey)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return der, nil
}

// Collateral returns what AMD KDS would serve for this chip, by URL: every
// VCEK issued so far, the product cert_chain (ASK then ARK, PEM) and a CRL
// issued at now.
func (a *SNPAuthority) Collateral(now time.Time) map[string]Response {
	out := map[string]Response{}
	der := http.Header{"Content-Type": {"application/pkix-cert"}}
	a.mu.Lock()
	for tcb, c := range a.vceks {
		out[SNPVCEKURL(a.product, a.chipID[:], tcb)] = Response{Header: der.Clone(), Body: c.Raw}
	}
	a.mu.Unlock()
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.ask.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.ark.Raw})...)
	out[kds.ProductCertChainURL(abi.VcekReportSigner, a.product)] = Response{
		Header: http.Header{"Content-Type": {"application/x-pem-file"}}, Body: chain,
	}
	if crl, err := a.CRL(now); err == nil {
		out[kds.CrlLinkByKey(a.product, abi.VcekReportSigner)] = Response{
			Header: http.Header{"Content-Type": {"application/pkix-crl"}}, Body: crl,
		}
	}
	return out
}
