package attest

import "time"

// Platform names the TEE technology that produced the evidence.
type Platform string

// Supported platforms.
const (
	PlatformTDX Platform = "tdx"
	PlatformSNP Platform = "sev-snp"
)

// Verdict is the outcome of one verification.
type Verdict string

// Verdicts.
const (
	VerdictAccepted Verdict = "accepted"
	VerdictRejected Verdict = "rejected"
)

// Result is what one verification found, for the CLI report, the admin UI,
// metrics and the trust log. It is filled as far as verification got, so a
// rejected Result still shows every value that was read.
type Result struct {
	Platform       Platform       `json:"platform"`
	Verdict        Verdict        `json:"verdict"`
	VerifiedAt     time.Time      `json:"verified_at"`
	EvidenceSHA256 string         `json:"evidence_sha256,omitempty"`
	ManifestSHA256 string         `json:"manifest_sha256,omitempty"`
	PolicyHash     string         `json:"coordinator_policy_hash,omitempty"`
	Product        string         `json:"product,omitempty"` // e.g. "Milan", or the TDX FMSPC
	Measurements   []Measurement  `json:"measurements,omitempty"`
	TCB            []TCBComponent `json:"tcb,omitempty"`
	// TCBStatus is the vendor's overall verdict on the platform TCB (TDX:
	// Intel's status after combining platform, TDX module and QE) and
	// TCBAdvisories the advisories it names.
	TCBStatus     string   `json:"tcb_status,omitempty"`
	TCBAdvisories []string `json:"tcb_advisories,omitempty"`
	// TCBAcceptedBy says which operator policy accepted a TCB status other
	// than UpToDate; empty when none was needed.
	TCBAcceptedBy string          `json:"tcb_accepted_by,omitempty"`
	Collateral    []CollateralUse `json:"collateral,omitempty"`
	Checks        []Check         `json:"checks,omitempty"`
	ErrorClass    Class           `json:"error_class,omitempty"`
	Error         string          `json:"error,omitempty"`
}

// Measurement is one measured register or field: the value the evidence
// reports and the value policy expects (empty when not checked).
type Measurement struct {
	Name     string `json:"name"`
	Actual   string `json:"actual"`
	Expected string `json:"expected,omitempty"`
	// Match is true when Expected is set and equals Actual (or, for minimums,
	// Actual meets it).
	Match bool `json:"match"`
}

// TCBComponent is the security version of one platform component and its
// status (e.g. "UpToDate", "OutOfDate", or "ok"/"below minimum").
type TCBComponent struct {
	Name    string `json:"name"`
	Actual  string `json:"actual"`
	Minimum string `json:"minimum,omitempty"`
	Status  string `json:"status"`
}

// CollateralUse records one piece of collateral used: where it came from and
// how fresh it is.
type CollateralUse struct {
	Name       string    `json:"name"`   // e.g. "TDX TCB info", "AMD VCEK", "PCK CRL"
	Source     string    `json:"source"` // "bundle", "online", "evidence"
	URL        string    `json:"url,omitempty"`
	FetchedAt  time.Time `json:"fetched_at,omitzero"`
	IssueDate  time.Time `json:"issue_date,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
}

// Check is one named step of verification and whether it passed.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// addCheck appends a check to the result.
func (r *Result) addCheck(name string, ok bool, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: detail})
}

// reject marks the result rejected with err and returns err.
func (r *Result) reject(err error) error {
	r.Verdict = VerdictRejected
	r.ErrorClass = ClassOf(err)
	r.Error = err.Error()
	return err
}
