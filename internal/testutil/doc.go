// Package testutil holds the test tools every package shares: a log buffer
// servers may write to while the test reads it, golden files with one
// -update flag, and a settable clock. Only tests import it; the dependency
// rule test in internal/layers fails if non-test code does.
package testutil
