package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
)

// Manifest trust modes.
const (
	ModePinned    = "pinned"    // the manifest must equal an operator-supplied file
	ModeAllowlist = "allowlist" // the manifest's SHA-256 must be on an operator list
	ModeDynamic   = "dynamic"   // the manifest is fetched and must equal what the coordinator runs
)

// ManifestFetcher returns the currently published manifest (dynamic mode).
type ManifestFetcher interface {
	FetchManifest(ctx context.Context) ([]byte, error)
}

// ManifestPolicy says which coordinator manifest we trust.
type ManifestPolicy struct {
	Mode string
	// Pinned is the trusted manifest's bytes (pinned mode).
	Pinned []byte
	// AllowedSHA256 lists trusted manifest hashes (allowlist mode; in
	// dynamic mode an optional further restriction).
	AllowedSHA256 []string
	// Fetcher supplies the published manifest (dynamic mode).
	Fetcher ManifestFetcher
	// MaxHistory bounds the coordinator's manifest history; 0 means 1.
	MaxHistory int
	// ApprovedRollbacks lists superseded manifests the operator approved.
	ApprovedRollbacks []string
}

// Verifier decides whether an attestation document from the backend may be
// trusted. A Verifier is safe for concurrent use if its TrustLog is.
type Verifier struct {
	Manifest ManifestPolicy
	Hardware HardwareOptions
	// TrustLog records accepted manifests; nil verifies without recording
	// (inspection from the CLI) and then skips the rollback check.
	TrustLog *TrustLog
}

// NonceSize is the length of our attestation nonce.
const NonceSize = 32

// VerifyDoc verifies doc for our nonce. On success the Result's verdict is
// accepted and, with a TrustLog, the acceptance is recorded. The returned
// Result is never nil; on failure it says how far verification got.
func (v *Verifier) VerifyDoc(ctx context.Context, doc *Doc, nonce []byte) (*Result, error) {
	silenceVendorLogs()
	now := v.Hardware.now()
	hw := v.Hardware
	hw.Now = now
	res := &Result{Platform: doc.Platform, Verdict: VerdictRejected, VerifiedAt: now}

	if len(nonce) != NonceSize {
		return res, res.reject(newError(ClassReportData, "nonce", nil, "want %d bytes, got %d", NonceSize, len(nonce)))
	}
	if _, err := ParseCACert(doc.MeshCA); err != nil {
		return res, res.reject(newError(ClassMalformed, "mesh_ca", err, "coordinator mesh CA"))
	}
	if _, err := ParseCACert(doc.RootCA); err != nil {
		return res, res.reject(newError(ClassMalformed, "root_ca", err, "coordinator root CA"))
	}

	latest := doc.LatestManifest()
	sum := sha256.Sum256(latest)
	res.ManifestSHA256 = hex.EncodeToString(sum[:])
	if err := v.checkManifestTrust(ctx, doc, latest, res.ManifestSHA256); err != nil {
		return res, res.reject(err)
	}
	res.addCheck("manifest trusted", true, v.Manifest.Mode)
	m, err := ParseManifest(latest)
	if err != nil {
		return res, res.reject(err)
	}
	policyHash, err := m.CoordinatorPolicyHash()
	if err != nil {
		return res, res.reject(err)
	}
	res.PolicyHash = hex.EncodeToString(policyHash[:])
	if v.TrustLog != nil {
		if err := v.TrustLog.CheckRollback(res.ManifestSHA256, v.Manifest.ApprovedRollbacks); err != nil {
			return res, res.reject(err)
		}
		res.addCheck("no rollback", true, "")
	}

	reportData := ExpectedReportData(nonce, TransitionDigest(doc.Manifests), doc.RootCA, doc.MeshCA)
	binding := Binding{ReportData: &reportData, PolicyHash: &policyHash}
	switch doc.Platform {
	case PlatformTDX:
		if len(m.ReferenceValues.TDX) == 0 {
			return res, res.reject(newError(ClassManifest, "ReferenceValues.tdx", nil, "the manifest has no TDX reference values but the coordinator runs on TDX"))
		}
		if err := VerifyTDX(ctx, doc.TDX, hw, res); err != nil {
			return res, res.reject(err)
		}
		if err := CheckTDX(doc.TDX, m.ReferenceValues.TDX, binding, res); err != nil {
			return res, res.reject(err)
		}
	case PlatformSNP:
		if len(m.ReferenceValues.SNP) == 0 {
			return res, res.reject(newError(ClassManifest, "ReferenceValues.snp", nil, "the manifest has no SNP reference values but the coordinator runs on SEV-SNP"))
		}
		if doc.SNP.Product == "" {
			// v2 reports carry no CPUID; the manifest names the product
			// line, and the vendor chain must still verify for it.
			doc.SNP.Product = m.ReferenceValues.SNP[0].ProductName
		}
		if err := VerifySNP(ctx, doc.SNP, hw, res); err != nil {
			return res, res.reject(err)
		}
		if err := CheckSNP(doc.SNP, m.ReferenceValues.SNP, binding, res); err != nil {
			return res, res.reject(err)
		}
	default:
		return res, res.reject(newError(ClassMalformed, "platform", nil, "unknown platform %q", doc.Platform))
	}

	res.Verdict = VerdictAccepted
	if v.TrustLog != nil {
		if _, err := v.TrustLog.Append(res); err != nil {
			// Not recorded means not accepted: the audit trail is part of
			// the guarantee.
			return res, res.reject(err)
		}
		res.addCheck("recorded in trust log", true, v.TrustLog.Path())
	}
	return res, nil
}

// checkManifestTrust applies the manifest policy to the coordinator's
// history: its length, and the latest manifest against pin, list or fetch.
func (v *Verifier) checkManifestTrust(ctx context.Context, doc *Doc, latest []byte, latestHash string) error {
	maxHistory := v.Manifest.MaxHistory
	if maxHistory <= 0 {
		maxHistory = 1
	}
	if len(doc.Manifests) > maxHistory {
		return newError(ClassManifest, "manifests", nil,
			"the coordinator reports %d manifests in its history, at most %d allowed (attestation.manifest.max_history)", len(doc.Manifests), maxHistory)
	}
	allowed := func() bool {
		return slices.ContainsFunc(v.Manifest.AllowedSHA256, func(h string) bool { return strings.EqualFold(strings.TrimSpace(h), latestHash) })
	}
	switch v.Manifest.Mode {
	case ModePinned:
		if len(v.Manifest.Pinned) == 0 {
			return newError(ClassPolicy, "manifest", nil, "pinned mode without a pinned manifest")
		}
		if !bytes.Equal(latest, v.Manifest.Pinned) {
			pin := sha256.Sum256(v.Manifest.Pinned)
			return newError(ClassManifest, "manifest", nil, "the coordinator runs manifest %s, the pinned manifest is %x", latestHash, pin)
		}
	case ModeAllowlist:
		if !allowed() {
			return newError(ClassManifest, "manifest", nil, "manifest %s is not in attestation.manifest.allowed_sha256", latestHash)
		}
	case ModeDynamic:
		if v.Manifest.Fetcher == nil {
			return newError(ClassPolicy, "manifest", nil, "dynamic mode without a manifest source")
		}
		published, err := v.Manifest.Fetcher.FetchManifest(ctx)
		if err != nil {
			return newError(ClassManifest, "manifest", err, "fetch the published manifest")
		}
		if !bytes.Equal(latest, published) {
			pub := sha256.Sum256(published)
			return newError(ClassManifest, "manifest", nil, "the coordinator runs manifest %s, the published manifest is %x", latestHash, pub)
		}
		if len(v.Manifest.AllowedSHA256) > 0 && !allowed() {
			return newError(ClassManifest, "manifest", nil, "published manifest %s is not in attestation.manifest.allowed_sha256", latestHash)
		}
	default:
		return newError(ClassPolicy, "manifest", nil, "unknown manifest mode %q", v.Manifest.Mode)
	}
	return nil
}

// ParseCACert parses exactly one PEM certificate that is a CA.
func ParseCACert(pemBytes []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("trailing data after the certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	if !c.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", c.Subject.CommonName)
	}
	return c, nil
}

// StaticManifest is a ManifestFetcher returning fixed bytes (tests, and a
// manifest file given on the command line).
type StaticManifest []byte

// FetchManifest returns the bytes.
func (s StaticManifest) FetchManifest(context.Context) ([]byte, error) { return s, nil }
