package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/abi"
)

// Manifest is a Contrast Coordinator manifest as Privatemode publishes it:
// the coordinator and workload policies and the reference values any
// attested TEE must match. Field names follow Contrast's JSON encoding.
// Unknown fields are ignored because the manifest format is external and
// grows; the manifest bytes themselves are pinned by hash.
type Manifest struct {
	Policies                map[string]PolicyEntry `json:"Policies"`
	ReferenceValues         ReferenceValues        `json:"ReferenceValues"`
	WorkloadOwnerKeyDigests []string               `json:"WorkloadOwnerKeyDigests,omitempty"`
	SeedshareOwnerPubKeys   []string               `json:"SeedshareOwnerPubKeys,omitempty"`
}

// PolicyEntry describes one workload policy; the map key is its SHA-256.
type PolicyEntry struct {
	SANs             []string `json:"SANs"`
	WorkloadSecretID string   `json:"WorkloadSecretID,omitempty"`
	Role             string   `json:"Role,omitempty"`
}

// RoleCoordinator marks the coordinator's policy entry.
const RoleCoordinator = "coordinator"

// ReferenceValues lists the accepted TEE configurations; evidence is
// accepted when it matches any one entry of its platform.
type ReferenceValues struct {
	SNP []SNPReference `json:"snp,omitempty"`
	TDX []TDXReference `json:"tdx,omitempty"`
}

// SNPTCB holds minimum SEV-SNP security version numbers (nil = unset).
type SNPTCB struct {
	BootloaderVersion *uint8 `json:"BootloaderVersion"`
	TEEVersion        *uint8 `json:"TEEVersion"`
	SNPVersion        *uint8 `json:"SNPVersion"`
	MicrocodeVersion  *uint8 `json:"MicrocodeVersion"`
}

// SNPReference is one accepted SEV-SNP configuration.
type SNPReference struct {
	Platform                string              `json:"Platform,omitempty"`
	ProductName             string              `json:"ProductName"` // "Milan", "Genoa", "Turin"
	TrustedMeasurement      string              `json:"TrustedMeasurement"`
	MinimumTCB              SNPTCB              `json:"MinimumTCB"`
	GuestPolicy             abi.SnpPolicy       `json:"GuestPolicy"`
	PlatformInfo            abi.SnpPlatformInfo `json:"PlatformInfo"`
	MinimumMitigationVector uint64              `json:"MinimumMitigationVector,omitempty"`
	AllowedChipIDs          []string            `json:"AllowedChipIDs,omitempty"`
	CPUs                    uint64              `json:"CPUs,omitempty"`
}

// TDXReference is one accepted TDX configuration. All values are hex.
type TDXReference struct {
	Platform                   string    `json:"Platform,omitempty"`
	MrTd                       string    `json:"MrTd"`
	MrSeam                     string    `json:"MrSeam"`
	Rtmrs                      [4]string `json:"Rtmrs"`
	Xfam                       string    `json:"Xfam"`
	TdAttributes               string    `json:"TdAttributes,omitempty"`
	MinimumTeeTcbSvn           string    `json:"MinimumTeeTcbSvn,omitempty"`
	MinimumQeSvn               *uint16   `json:"MinimumQeSvn,omitempty"`
	MinimumPceSvn              *uint16   `json:"MinimumPceSvn,omitempty"`
	MinTCBEvaluationDataNumber int       `json:"MinTCBEvaluationDataNumber,omitempty"`
	AllowedPIIDs               []string  `json:"AllowedPIIDs,omitempty"`
	MemoryIntegrity            bool      `json:"MemoryIntegrity,omitempty"`
	SMTDisabled                bool      `json:"SMTDisabled,omitempty"`
	StaticPlatform             bool      `json:"StaticPlatform,omitempty"`
	CPUs                       uint64    `json:"CPUs,omitempty"`
}

// UnmarshalJSON accepts Contrast's historical spelling "Rtrms" as well.
func (r *TDXReference) UnmarshalJSON(b []byte) error {
	type plain TDXReference
	var aux struct {
		plain
		Rtrms *[4]string `json:"Rtrms"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*r = TDXReference(aux.plain)
	if aux.Rtrms != nil && r.Rtmrs == [4]string{} {
		r.Rtmrs = *aux.Rtrms
	}
	return nil
}

// ParseManifest decodes and validates manifest bytes. The error is of class
// ClassMalformed for undecodable input and ClassPolicy for invalid values.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, newError(ClassMalformed, "manifest", err, "decode manifest JSON")
	}
	if dec.More() {
		return nil, newError(ClassMalformed, "manifest", nil, "trailing data after manifest JSON")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks that the manifest names exactly one coordinator policy and
// that every reference value is well-formed.
func (m *Manifest) Validate() error {
	coordinators := 0
	for h, p := range m.Policies {
		if err := checkHex(h, sha256.Size); err != nil {
			return newError(ClassPolicy, "Policies", err, "policy hash %q", h)
		}
		if p.Role == RoleCoordinator {
			coordinators++
		}
	}
	if coordinators != 1 {
		return newError(ClassPolicy, "Policies", nil, "expected exactly one policy with role %q, found %d", RoleCoordinator, coordinators)
	}
	if len(m.ReferenceValues.SNP)+len(m.ReferenceValues.TDX) == 0 {
		return newError(ClassPolicy, "ReferenceValues", nil, "no SNP or TDX reference values")
	}
	for i, r := range m.ReferenceValues.SNP {
		if err := r.validate(); err != nil {
			return newError(ClassPolicy, fmt.Sprintf("ReferenceValues.snp[%d]", i), err, "invalid SNP reference values")
		}
	}
	for i, r := range m.ReferenceValues.TDX {
		if err := r.validate(); err != nil {
			return newError(ClassPolicy, fmt.Sprintf("ReferenceValues.tdx[%d]", i), err, "invalid TDX reference values")
		}
	}
	return nil
}

// CoordinatorPolicyHash returns the SHA-256 of the coordinator's policy,
// which SNP reports carry as HOST_DATA and TDX quotes as MRCONFIGID.
func (m *Manifest) CoordinatorPolicyHash() ([32]byte, error) {
	var out [32]byte
	for h, p := range m.Policies {
		if p.Role == RoleCoordinator {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != 32 {
				return out, newError(ClassPolicy, "Policies", err, "coordinator policy hash %q is not 32 hex bytes", h)
			}
			copy(out[:], b)
			return out, nil
		}
	}
	return out, newError(ClassPolicy, "Policies", nil, "no coordinator policy")
}

func (r SNPReference) validate() error {
	switch r.ProductName {
	case "Milan", "Genoa", "Turin":
	default:
		return fmt.Errorf("field ProductName %q: want Milan, Genoa or Turin", r.ProductName)
	}
	if err := checkHex(r.TrustedMeasurement, abi.MeasurementSize); err != nil {
		return fmt.Errorf("field TrustedMeasurement: %w", err)
	}
	t := r.MinimumTCB
	if t.BootloaderVersion == nil || t.TEEVersion == nil || t.SNPVersion == nil || t.MicrocodeVersion == nil {
		return fmt.Errorf("field MinimumTCB: all of BootloaderVersion, TEEVersion, SNPVersion, MicrocodeVersion are required")
	}
	if r.GuestPolicy.Debug {
		return fmt.Errorf("GuestPolicy.Debug: debug guests are never accepted")
	}
	for i, c := range r.AllowedChipIDs {
		if err := checkHex(c, abi.ChipIDSize); err != nil {
			return fmt.Errorf("field AllowedChipIDs[%d]: %w", i, err)
		}
	}
	return nil
}

func (r TDXReference) validate() error {
	if err := checkHex(r.MrTd, 48); err != nil {
		return fmt.Errorf("field MrTd: %w", err)
	}
	if err := checkHex(r.MrSeam, 48); err != nil {
		return fmt.Errorf("field MrSeam: %w", err)
	}
	if err := checkHex(r.Xfam, 8); err != nil {
		return fmt.Errorf("field Xfam: %w", err)
	}
	for i, v := range r.Rtmrs {
		if err := checkHex(v, 48); err != nil {
			return fmt.Errorf("field Rtmrs[%d]: %w", i, err)
		}
	}
	if r.TdAttributes != "" {
		if err := checkHex(r.TdAttributes, 8); err != nil {
			return fmt.Errorf("field TdAttributes: %w", err)
		}
	}
	if r.MinimumTeeTcbSvn != "" {
		if err := checkHex(r.MinimumTeeTcbSvn, 16); err != nil {
			return fmt.Errorf("field MinimumTeeTcbSvn: %w", err)
		}
	}
	for i, p := range r.AllowedPIIDs {
		if err := checkHex(p, 16); err != nil {
			return fmt.Errorf("field AllowedPIIDs[%d]: %w", i, err)
		}
	}
	return nil
}

// checkHex reports whether s is exactly n bytes of hex.
func checkHex(s string, n int) error {
	if len(s) != 2*n {
		return fmt.Errorf("want %d hex characters, got %d", 2*n, len(s))
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("not hex: %w", err)
	}
	return nil
}

// mustHex decodes hex validated by checkHex; it returns nil for "".
func mustHex(s string) []byte {
	b, _ := hex.DecodeString(strings.TrimSpace(s))
	return b
}
