// Package testutil holds the test tools every package shares: a log buffer
// servers may write to while the test reads it, golden files with one
// -update flag, a settable clock, a throwaway CA and a loopback server that
// is shut down when the test ends, and a git checkout with a bare origin
// (what a flow executor works in). Only tests import it; the dependency
// rule test in internal/layers fails if non-test code does.
package testutil
