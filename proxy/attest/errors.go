package attest

import (
	"errors"
	"fmt"
)

// Class names one kind of verification failure. The UI, metrics and tests
// switch on it; they never match error strings.
type Class string

// The failure classes. Each one has a sentinel error below for errors.Is.
const (
	ClassMalformed       Class = "malformed"        // the document or evidence cannot be parsed
	ClassSignature       Class = "signature"        // the report or quote signature does not verify
	ClassChain           Class = "chain"            // the vendor certificate chain does not lead to a trusted root
	ClassCollateral      Class = "collateral"       // collateral missing, unsigned or not matching the evidence
	ClassCollateralStale Class = "collateral-stale" // collateral older than allowed or past its nextUpdate
	ClassRevoked         Class = "revoked"          // a certificate in the chain is revoked
	ClassTCB             Class = "tcb"              // the platform TCB is below policy or not UpToDate
	ClassMeasurement     Class = "measurement"      // a measured value differs from the reference value
	ClassDebug           Class = "debug"            // the guest runs with debugging enabled
	ClassReportData      Class = "report-data"      // REPORT_DATA does not bind our nonce and the coordinator CAs
	ClassManifest        Class = "manifest"         // the coordinator's manifest is not the trusted one
	ClassRollback        Class = "rollback"         // an older manifest would replace a newer accepted one
	ClassPolicy          Class = "policy"           // the reference values themselves are invalid
	ClassTrustLog        Class = "trust-log"        // the trust log is unreadable, broken or cannot be written
)

// Sentinel errors, one per class: errors.Is(err, ErrMeasurement) is true for
// every *Error of class ClassMeasurement.
var (
	ErrMalformed       = &Error{Class: ClassMalformed}
	ErrSignature       = &Error{Class: ClassSignature}
	ErrChain           = &Error{Class: ClassChain}
	ErrCollateral      = &Error{Class: ClassCollateral}
	ErrCollateralStale = &Error{Class: ClassCollateralStale}
	ErrRevoked         = &Error{Class: ClassRevoked}
	ErrTCB             = &Error{Class: ClassTCB}
	ErrMeasurement     = &Error{Class: ClassMeasurement}
	ErrDebug           = &Error{Class: ClassDebug}
	ErrReportData      = &Error{Class: ClassReportData}
	ErrManifest        = &Error{Class: ClassManifest}
	ErrRollback        = &Error{Class: ClassRollback}
	ErrPolicy          = &Error{Class: ClassPolicy}
	ErrTrustLog        = &Error{Class: ClassTrustLog}
)

// Error is a verification failure: its class, the field or item concerned
// (may be empty), a message saying what failed and how to fix it, and the
// underlying library error if any.
type Error struct {
	Class Class
	Field string
	Msg   string
	Err   error
}

// newError builds an *Error; msg is formatted with args.
func newError(class Class, field string, err error, msg string, args ...any) *Error {
	return &Error{Class: class, Field: field, Msg: fmt.Sprintf(msg, args...), Err: err}
}

// Error renders "class: field: message: cause".
func (e *Error) Error() string {
	s := string(e.Class)
	if e.Field != "" {
		s += ": " + e.Field
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying library error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's class.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Field != "" || t.Msg != "" || t.Err != nil {
		return false
	}
	return t.Class == e.Class
}

// ClassOf returns the class of the first *Error in err's chain, or "" when
// err carries none.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ""
}
