package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// MaxDocSize bounds an attestation document; real ones are tens of KiB.
const MaxDocSize = 4 << 20

// Contrast's OIDs for the raw evidence type (attestation_type).
var (
	oidSNP = []int{1, 3, 9901, 2, 1}
	oidTDX = []int{1, 3, 9901, 2, 2}
)

// Doc is a Contrast Coordinator attestation document as the Privatemode API
// relays it from /privatemode/v1/attest, with its evidence parsed.
type Doc struct {
	Version string
	// RawEvidence is raw_attestation_doc: a protobuf sevsnp.Attestation or
	// tdx.QuoteV4.
	RawEvidence []byte
	// Manifests is the coordinator's manifest history, oldest first.
	Manifests [][]byte
	Policies  [][]byte
	RootCA    []byte // PEM
	MeshCA    []byte // PEM

	Platform Platform
	TDX      *TDXEvidence // set when Platform is PlatformTDX
	SNP      *SNPEvidence // set when Platform is PlatformSNP
}

// wireDoc is the JSON form; []byte fields are base64 as encoding/json does.
type wireDoc struct {
	Version           string   `json:"version"`
	RawAttestationDoc []byte   `json:"raw_attestation_doc"`
	AttestationType   []int    `json:"attestation_type,omitempty"`
	Manifests         [][]byte `json:"manifests"`
	Policies          [][]byte `json:"policies"`
	RootCA            []byte   `json:"root_ca"`
	MeshCA            []byte   `json:"mesh_ca"`
}

// ParseDoc decodes an attestation document and parses its evidence. The
// platform comes from attestation_type when present; otherwise the evidence
// is tried as a TDX quote, then as an SNP attestation. Every failure is of
// class ClassMalformed.
func ParseDoc(b []byte) (*Doc, error) {
	if len(b) > MaxDocSize {
		return nil, newError(ClassMalformed, "document", nil, "%d bytes exceeds the %d byte limit", len(b), MaxDocSize)
	}
	var w wireDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&w); err != nil {
		return nil, newError(ClassMalformed, "document", err, "decode attestation document JSON")
	}
	if dec.More() {
		return nil, newError(ClassMalformed, "document", nil, "trailing data after attestation document")
	}
	if len(w.RawAttestationDoc) == 0 {
		return nil, newError(ClassMalformed, "raw_attestation_doc", nil, "missing")
	}
	if len(w.Manifests) == 0 {
		return nil, newError(ClassMalformed, "manifests", nil, "the coordinator reported no manifest")
	}
	if len(w.RootCA) == 0 || len(w.MeshCA) == 0 {
		return nil, newError(ClassMalformed, "root_ca/mesh_ca", nil, "missing coordinator CA certificates")
	}
	d := &Doc{
		Version:     w.Version,
		RawEvidence: w.RawAttestationDoc,
		Manifests:   w.Manifests,
		Policies:    w.Policies,
		RootCA:      w.RootCA,
		MeshCA:      w.MeshCA,
	}
	switch {
	case equalOID(w.AttestationType, oidTDX):
		return d, d.parseTDX()
	case equalOID(w.AttestationType, oidSNP):
		return d, d.parseSNP()
	case len(w.AttestationType) != 0:
		return nil, newError(ClassMalformed, "attestation_type", nil, "unsupported evidence type %v", w.AttestationType)
	}
	// Older coordinators omit the type: a QuoteV4 has a fixed header and
	// signature layout that an SNP attestation proto will not satisfy.
	if err := d.parseTDX(); err == nil {
		return d, nil
	}
	if err := d.parseSNP(); err != nil {
		return nil, newError(ClassMalformed, "raw_attestation_doc", err, "neither a TDX quote nor an SEV-SNP attestation")
	}
	return d, nil
}

func (d *Doc) parseTDX() error {
	parse := ParseTDXQuoteProto
	if rawTDXQuote(d.RawEvidence) {
		// go-tdx-guest's QuoteV4 protobuf cannot hold a v5 quote, so a
		// coordinator on a TDX 1.5 module can only send the quote as
		// Intel's binary form. A protobuf never starts like that: its
		// first byte is a field tag, never a version number.
		parse = ParseTDXQuote
	}
	ev, err := parse(d.RawEvidence)
	if err != nil {
		return err
	}
	d.Platform, d.TDX, d.SNP = PlatformTDX, ev, nil
	return nil
}

// rawTDXQuote reports whether b starts like a binary TDX quote: version 4
// or 5, attestation key type 2 (ECDSA P-256), TEE type 0x81.
func rawTDXQuote(b []byte) bool {
	return len(b) >= 8 && (b[0] == 4 || b[0] == 5) && b[1] == 0 && b[2] == 2 && b[3] == 0 &&
		b[4] == 0x81 && b[5] == 0 && b[6] == 0 && b[7] == 0
}

func (d *Doc) parseSNP() error {
	ev, err := ParseSNPAttestationProto(d.RawEvidence)
	if err != nil {
		return err
	}
	d.Platform, d.SNP, d.TDX = PlatformSNP, ev, nil
	return nil
}

// Marshal encodes the document in the wire JSON form (for tests, the sandbox
// and `collateral export`).
func (d *Doc) Marshal() ([]byte, error) {
	w := wireDoc{
		Version:           d.Version,
		RawAttestationDoc: d.RawEvidence,
		Manifests:         d.Manifests,
		Policies:          d.Policies,
		RootCA:            d.RootCA,
		MeshCA:            d.MeshCA,
	}
	switch d.Platform {
	case PlatformTDX:
		w.AttestationType = oidTDX
	case PlatformSNP:
		w.AttestationType = oidSNP
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode attestation document: %w", err)
	}
	return b, nil
}

// LatestManifest returns the newest manifest in the coordinator's history.
func (d *Doc) LatestManifest() []byte { return d.Manifests[len(d.Manifests)-1] }

// CollateralURLs lists the vendor URLs whose responses verifying d needs.
func (d *Doc) CollateralURLs() []string {
	switch d.Platform {
	case PlatformTDX:
		return TDXCollateralURLs(d.TDX)
	case PlatformSNP:
		return SNPCollateralURLs(d.SNP)
	}
	return nil
}

// TransitionDigest chains the manifest history as Contrast does:
// t = SHA-256(SHA-256(manifest_i) ‖ t_prev), starting from 32 zero bytes.
func TransitionDigest(manifests [][]byte) [32]byte {
	var t [32]byte
	for _, m := range manifests {
		mh := sha256.Sum256(m)
		t = sha256.Sum256(append(mh[:], t[:]...))
	}
	return t
}

// ExpectedReportData is the REPORT_DATA a coordinator must produce for our
// nonce: SHA-256(nonce ‖ transitionDigest ‖ SHA-256(root_ca) ‖ SHA-256(mesh_ca)),
// zero-padded to 64 bytes.
func ExpectedReportData(nonce []byte, transition [32]byte, rootCA, meshCA []byte) [64]byte {
	rh := sha256.Sum256(rootCA)
	mh := sha256.Sum256(meshCA)
	h := sha256.New()
	h.Write(nonce)
	h.Write(transition[:])
	h.Write(rh[:])
	h.Write(mh[:])
	var out [64]byte
	copy(out[:], h.Sum(nil))
	return out
}

func equalOID(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
