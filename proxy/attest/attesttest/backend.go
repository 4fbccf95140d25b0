package attesttest

import (
	"encoding/hex"
	"fmt"
	"maps"
	"time"
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
	return b, nil
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
	return b.Coordinator.Doc(EvidenceTDX, q, manifests, true)
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
	return out, nil
}

// RootsPEM returns the test vendor roots: the TDX root CA.
func (b *Backend) RootsPEM() []byte {
	return append([]byte(nil), b.TDX.RootPEM()...)
}
