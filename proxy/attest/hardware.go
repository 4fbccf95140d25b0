package attest

import (
	"context"
	"crypto/x509"
	"net/http"
	"time"
)

// CollateralItem is one collateral response: the body and headers exactly as
// the vendor service (Intel PCS, AMD KDS) returned them, and when.
type CollateralItem struct {
	URL       string
	Header    http.Header
	Body      []byte
	FetchedAt time.Time
	// Source says where the item came from: "bundle" or "online".
	Source string
}

// CollateralSource returns collateral by the vendor URL it is published at.
// An implementation that has no item for url returns an error wrapping
// ErrCollateralNotFound; it never returns a partial item.
type CollateralSource interface {
	Collateral(ctx context.Context, url string) (*CollateralItem, error)
}

// ErrCollateralNotFound is wrapped by CollateralSource errors for an unknown URL.
var ErrCollateralNotFound = newError(ClassCollateral, "", nil, "collateral not available")

// Roots replaces the embedded vendor roots. Only tests and the sandbox set it:
// production configuration has no way to reach it.
type Roots struct {
	// TDX replaces the embedded Intel SGX Root CA.
	TDX *x509.CertPool
	// SNP replaces the embedded AMD roots: product line ("Milan", "Genoa",
	// "Turin") to its ARK and ASK.
	SNP map[string]AMDChain
}

// AMDChain is an AMD root key (ARK) and signing key (ASK) for one product line.
type AMDChain struct {
	ARK *x509.Certificate
	ASK *x509.Certificate
}

// HardwareOptions controls how evidence is checked against the vendor:
// when, with which roots, and with which collateral.
type HardwareOptions struct {
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// Collateral supplies TCB info, QE identity, CRLs and VCEKs. Nil means
	// signature and chain only, which is acceptable only when
	// SkipCollateral is set deliberately.
	Collateral CollateralSource
	// SkipCollateral verifies signature and chain only (no TCB status, no
	// revocation). Never the default.
	SkipCollateral bool
	// MaxCollateralAge rejects collateral fetched longer ago than this
	// (ClassCollateralStale); zero means 30 days.
	MaxCollateralAge time.Duration
	// Roots overrides the embedded vendor roots (tests and sandbox only).
	Roots *Roots
	// TCBPolicy is the operator's decision on TCB statuses other than
	// UpToDate (TDX) and an operator minimum TCB (SEV-SNP). The zero value
	// accepts UpToDate TDX platforms only.
	TCBPolicy TCBPolicy
}

// DefaultMaxCollateralAge is the default bound on collateral age.
const DefaultMaxCollateralAge = 30 * 24 * time.Hour

func (o HardwareOptions) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

func (o HardwareOptions) maxAge() time.Duration {
	if o.MaxCollateralAge <= 0 {
		return DefaultMaxCollateralAge
	}
	return o.MaxCollateralAge
}

// Binding is what the evidence must be bound to: REPORT_DATA and the
// coordinator policy hash (SNP HOST_DATA, TDX MRCONFIGID). A nil field is not
// checked, which only raw-evidence inspection uses.
type Binding struct {
	ReportData *[64]byte
	PolicyHash *[32]byte
}

// RefreshHint is appended to stale-collateral errors so an operator knows
// what to run.
const RefreshHint = "refresh it with `duo-confidential collateral export` on a connected machine and `duo-confidential collateral import` here"
