package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// Coordinator plays the Contrast Coordinator's part for test evidence: it
// owns a root CA and a mesh CA, a coordinator policy whose hash goes into
// HOST_DATA / MRCONFIGID, and it assembles manifests and attestation
// documents in the wire format.
type Coordinator struct {
	RootCAPEM  []byte
	MeshCAPEM  []byte
	MeshCAKey  *ecdsa.PrivateKey
	MeshCACert *x509.Certificate
	Policy     []byte   // the coordinator's (opaque, test) policy document
	PolicyHash [32]byte // SHA-256 of Policy
}

// NewCoordinator creates fresh CAs valid from now−1h for one year.
func NewCoordinator(now time.Time) (*Coordinator, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate root CA key: %w", err)
	}
	meshKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate mesh CA key: %w", err)
	}
	tmpl := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"duo-confidential sandbox (NOT CONFIDENTIAL)"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(365 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		}
	}
	rootTmpl := tmpl(1, "sandbox coordinator root CA")
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	meshTmpl := tmpl(2, "sandbox coordinator mesh CA")
	meshDER, err := x509.CreateCertificate(rand.Reader, meshTmpl, meshTmpl, &meshKey.PublicKey, meshKey)
	if err != nil {
		return nil, fmt.Errorf("create mesh CA: %w", err)
	}
	meshCert, err := x509.ParseCertificate(meshDER)
	if err != nil {
		return nil, fmt.Errorf("parse mesh CA: %w", err)
	}
	policy := []byte("package coordinator_policy\n# sandbox coordinator policy: NOT CONFIDENTIAL\n")
	return &Coordinator{
		RootCAPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		MeshCAPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: meshDER}),
		MeshCAKey:  meshKey,
		MeshCACert: meshCert,
		Policy:     policy,
		PolicyHash: sha256.Sum256(policy),
	}, nil
}

// Manifest returns manifest JSON with the coordinator policy and the given
// reference values, which must marshal to Contrast's ReferenceValues shape
// ({"snp":[...],"tdx":[...]}).
func (c *Coordinator) Manifest(referenceValues any) ([]byte, error) {
	m := map[string]any{
		"Policies": map[string]any{
			hex.EncodeToString(c.PolicyHash[:]): map[string]any{
				"SANs": []string{"coordinator"},
				"Role": "coordinator",
			},
		},
		"ReferenceValues":         referenceValues,
		"WorkloadOwnerKeyDigests": []string{},
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

// ReportData computes the REPORT_DATA a coordinator puts into its evidence
// for a nonce. It is written independently of package attest so tests
// cross-check the two implementations.
func (c *Coordinator) ReportData(nonce []byte, manifests [][]byte) [64]byte {
	var t [32]byte
	for _, m := range manifests {
		mh := sha256.Sum256(m)
		t = sha256.Sum256(append(mh[:], t[:]...))
	}
	rootH := sha256.Sum256(c.RootCAPEM)
	meshH := sha256.Sum256(c.MeshCAPEM)
	var in []byte
	in = append(in, nonce...)
	in = append(in, t[:]...)
	in = append(in, rootH[:]...)
	in = append(in, meshH[:]...)
	sum := sha256.Sum256(in)
	var out [64]byte
	copy(out[:], sum[:])
	return out
}

// Evidence types for Doc.
const (
	EvidenceTDX = "tdx"
	EvidenceSNP = "snp"
)

// Doc assembles an attestation document in the wire JSON form, with the
// attestation_type of kind. evidence is the protobuf-marshalled QuoteV4 or
// sevsnp.Attestation.
func (c *Coordinator) Doc(kind string, evidence []byte, manifests [][]byte) ([]byte, error) {
	d := map[string]any{
		"version":             "v1.20.0-sandbox",
		"raw_attestation_doc": evidence,
		"manifests":           manifests,
		"policies":            [][]byte{c.Policy},
		"root_ca":             c.RootCAPEM,
		"mesh_ca":             c.MeshCAPEM,
	}
	switch kind {
	case EvidenceTDX:
		d["attestation_type"] = []int{1, 3, 9901, 2, 2}
	case EvidenceSNP:
		d["attestation_type"] = []int{1, 3, 9901, 2, 1}
	default:
		return nil, fmt.Errorf("unknown evidence kind %q", kind)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode attestation document: %w", err)
	}
	return b, nil
}
