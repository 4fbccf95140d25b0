package attesttest

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"maps"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/idblock"
	"github.com/google/go-sev-guest/abi"
)

// Backend is a complete, test-signed confidential backend as a client sees
// it: a coordinator with manifests for TDX and SEV-SNP, vendor authorities,
// their collateral and roots. It answers attestation requests for any
// nonce. Nothing about it is confidential: it exists for tests, the demo
// and the sandbox.
type Backend struct {
	Now         time.Time
	Coordinator *Coordinator
	TDX         *TDXAuthority
	// TDXManifest is the manifest whose reference values match TDXDoc's
	// evidence by default.
	TDXManifest []byte
	tdxDefaults TDXQuoteOptions

	SNP *SNPAuthority
	// SNPManifest is the manifest whose reference values match SNPDoc's
	// evidence by default.
	SNPManifest []byte
	snpDefaults SNPReportOptions
}

// NewBackend creates a backend whose certificates are valid at now.
func NewBackend(now time.Time) (*Backend, error) {
	c, err := NewCoordinator(now)
	if err != nil {
		return nil, err
	}
	tdx, err := NewTDXAuthority(now)
	if err != nil {
		return nil, err
	}
	b := &Backend{Now: now, Coordinator: c, TDX: tdx}
	b.tdxDefaults = DefaultTDXQuoteOptions([64]byte{})
	// Sandbox TDs are never debug TDs; clear the bit the sample might carry.
	b.tdxDefaults.TdAttributes[0] &^= 1
	copy(b.tdxDefaults.MrConfigID[:], c.PolicyHash[:])
	for i := 32; i < 48; i++ {
		b.tdxDefaults.MrConfigID[i] = 0
	}
	if b.TDXManifest, err = c.Manifest(map[string]any{"tdx": []any{tdxReference(b.tdxDefaults)}}); err != nil {
		return nil, err
	}
	if err := b.initSNP(now); err != nil {
		return nil, err
	}
	return b, nil
}

// sandboxMeasurement is the launch measurement of the sandbox's imaginary
// SNP guest: a recognisable constant, not a hash of anything.
var sandboxMeasurement = [48]byte{0x5a, 0x4e, 0x44, 0x42, 0x4f, 0x58} // "ZNDBOX"

// initSNP creates a Milan authority and the matching manifest: SMT allowed,
// debug off, ID block derived as Contrast does, HOST_DATA = policy hash.
func (b *Backend) initSNP(now time.Time) error {
	a, err := NewSNPAuthority("Milan", now)
	if err != nil {
		return err
	}
	b.SNP = a
	policy := abi.SnpPolicy{SMT: true}
	idKey, err := idblock.KeyDigest(sandboxMeasurement, policy)
	if err != nil {
		return fmt.Errorf("derive sandbox ID key: %w", err)
	}
	b.snpDefaults = SNPReportOptions{
		HostData:    b.Coordinator.PolicyHash,
		Measurement: sandboxMeasurement,
		Policy:      abi.SnpPolicyToBytes(policy),
		IDKeyDigest: idKey,
	}
	tcb := a.TCB()
	spl := func(shift uint) uint8 { return uint8(tcb >> shift) }
	ref := map[string]any{
		"ProductName":        a.Product(),
		"TrustedMeasurement": hex.EncodeToString(sandboxMeasurement[:]),
		"MinimumTCB": map[string]uint8{
			"BootloaderVersion": spl(0),
			"TEEVersion":        spl(8),
			"SNPVersion":        spl(48),
			"MicrocodeVersion":  spl(56),
		},
		"GuestPolicy":  policy,
		"PlatformInfo": abi.SnpPlatformInfo{},
	}
	b.SNPManifest, err = b.Coordinator.Manifest(map[string]any{"snp": []any{ref}})
	return err
}

// SNPReportOptions returns the report options matching SNPManifest, for
// tests that change one value.
func (b *Backend) SNPReportOptions() SNPReportOptions { return b.snpDefaults }

// SNPDoc answers an attestation request for nonce with SEV-SNP evidence
// (report, VCEK, ASK, ARK and CRL) bound to manifests (default:
// SNPManifest alone). mutate, if not nil, changes the report before signing.
func (b *Backend) SNPDoc(nonce []byte, manifests [][]byte, mutate func(*SNPReportOptions)) ([]byte, error) {
	if manifests == nil {
		manifests = [][]byte{b.SNPManifest}
	}
	o := b.snpDefaults
	o.ReportData = b.Coordinator.ReportData(nonce, manifests)
	if mutate != nil {
		mutate(&o)
	}
	att, err := b.SNP.Attestation(o)
	if err != nil {
		return nil, fmt.Errorf("sign SNP report: %w", err)
	}
	return b.Coordinator.Doc(EvidenceSNP, att, manifests)
}

// tdxReference renders quote options as a Contrast TDX reference entry.
func tdxReference(o TDXQuoteOptions) map[string]any {
	rtmrs := make([]string, 4)
	for i := range o.Rtmrs {
		rtmrs[i] = hex.EncodeToString(o.Rtmrs[i][:])
	}
	return map[string]any{
		"MrTd":             hex.EncodeToString(o.MrTd[:]),
		"MrSeam":           hex.EncodeToString(o.MrSeam[:]),
		"Rtmrs":            rtmrs,
		"Xfam":             hex.EncodeToString(o.Xfam[:]),
		"TdAttributes":     hex.EncodeToString(o.TdAttributes[:]),
		"MinimumTeeTcbSvn": hex.EncodeToString(o.TeeTcbSvn[:]),
	}
}

// TDXQuoteOptions returns the quote options matching TDXManifest, for
// tests that change one value.
func (b *Backend) TDXQuoteOptions() TDXQuoteOptions { return b.tdxDefaults }

// TDXDoc answers an attestation request for nonce with TDX evidence bound
// to manifests (default: TDXManifest alone). mutate, if not nil, changes
// the quote before it is signed (fault injection).
func (b *Backend) TDXDoc(nonce []byte, manifests [][]byte, mutate func(*TDXQuoteOptions)) ([]byte, error) {
	if manifests == nil {
		manifests = [][]byte{b.TDXManifest}
	}
	o := b.tdxDefaults
	o.ReportData = b.Coordinator.ReportData(nonce, manifests)
	if mutate != nil {
		mutate(&o)
	}
	q, err := b.TDX.QuoteProto(o)
	if err != nil {
		return nil, fmt.Errorf("sign TDX quote: %w", err)
	}
	return b.Coordinator.Doc(EvidenceTDX, q, manifests)
}

// Collateral returns every collateral response the backend's evidence
// needs, keyed by vendor URL, issued at b.Now.
func (b *Backend) Collateral() (map[string]Response, error) {
	out := map[string]Response{}
	tdx, err := b.TDX.Collateral(TDXCollateralOptions{IssuedAt: b.Now})
	if err != nil {
		return nil, fmt.Errorf("TDX collateral: %w", err)
	}
	maps.Copy(out, tdx)
	maps.Copy(out, b.SNP.Collateral(b.Now))
	return out, nil
}

// RootsPEM returns the test vendor roots: the TDX root CA and the AMD ARK
// and ASK.
func (b *Backend) RootsPEM() []byte {
	out := append([]byte(nil), b.TDX.RootPEM()...)
	for _, c := range []*x509.Certificate{b.SNP.ARK(), b.SNP.ASK()} {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
