package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/wording"
)

// checkStatus is a doctor check's verdict.
type checkStatus string

// Verdicts. Only FAIL makes doctor exit non-zero: WARN is something to
// look at (or not configured yet), SKIP was not checked.
const (
	statusPass checkStatus = "PASS"
	statusWarn checkStatus = "WARN"
	statusFail checkStatus = "FAIL"
	statusSkip checkStatus = "SKIP"
)

// checkResult is one line of the report, and one element of --json.
type checkResult struct {
	Name   string      `json:"name"`
	Status checkStatus `json:"status"`
	Detail string      `json:"detail"`
	Fix    string      `json:"fix,omitempty"`
}

func pass(format string, args ...any) checkResult {
	return checkResult{Status: statusPass, Detail: fmt.Sprintf(format, args...)}
}

func skip(format string, args ...any) checkResult {
	return checkResult{Status: statusSkip, Detail: fmt.Sprintf(format, args...)}
}

func warn(fix, format string, args ...any) checkResult {
	return checkResult{Status: statusWarn, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(fix, format string, args ...any) checkResult {
	return checkResult{Status: statusFail, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// defaultCheckTimeout bounds a check that sets no timeout of its own.
const defaultCheckTimeout = 10 * time.Second

// doctorCheck is one check of the runner.
type doctorCheck struct {
	name string
	// needs lists earlier checks that must PASS or WARN; otherwise this
	// one is SKIPped, since its answer would only repeat theirs.
	needs []string
	// online checks talk to the network (the running appliance, GitLab,
	// Privatemode) and are SKIPped with --offline.
	online bool
	// applies, when set, runs before the --offline rule: a non-nil result
	// (usually "not configured") is reported instead of running the check.
	applies func() *checkResult
	timeout time.Duration // 0: defaultCheckTimeout
	run     func(ctx context.Context) checkResult
}

// runChecks runs checks in order, each with its own timeout, and carries
// on after failures.
func runChecks(ctx context.Context, checks []doctorCheck, offline bool) []checkResult {
	out := make([]checkResult, 0, len(checks))
	byName := make(map[string]checkResult, len(checks))
	for _, c := range checks {
		r := runOne(ctx, c, offline, byName)
		r.Name = c.name
		byName[c.name] = r
		out = append(out, r)
	}
	return out
}

// runOne runs one check unless a dependency did not pass: a skipped
// dependency passes on its reason (--offline, not configured), a failed
// one is named.
func runOne(ctx context.Context, c doctorCheck, offline bool, done map[string]checkResult) (r checkResult) {
	for _, dep := range c.needs {
		switch d := done[dep]; d.Status {
		case statusPass, statusWarn:
		case statusSkip:
			return skip("%s", d.Detail)
		default:
			return skip("not checked: %s failed", dep)
		}
	}
	if c.applies != nil {
		if r := c.applies(); r != nil {
			return *r
		}
	}
	if c.online && offline {
		return skip("--offline: not checked")
	}
	timeout := c.timeout
	if timeout == 0 {
		timeout = defaultCheckTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			r = fail("this is a bug in doctor; please report it with the output above", "internal error: %v", p)
		}
	}()
	r = c.run(cctx)
	if r.Status == "" {
		r = fail("this is a bug in doctor; please report it", "the check returned no verdict")
	}
	if cctx.Err() == context.DeadlineExceeded && r.Status == statusFail && !strings.Contains(r.Detail, "timed out") {
		r.Detail += fmt.Sprintf(" (timed out after %s)", timeout)
	}
	return r
}

// summary counts results by status.
func summary(results []checkResult) map[checkStatus]int {
	n := map[checkStatus]int{}
	for _, r := range results {
		n[r.Status]++
	}
	return n
}

// writeText prints one aligned line per check, the fix under a
// FAIL or WARN, and a summary line, like the other commands' reports.
func writeText(w io.Writer, results []checkResult) error {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Name))
	}
	var b strings.Builder
	indent := strings.Repeat(" ", 4+2+width+2)
	for _, r := range results {
		detail := strings.ReplaceAll(strings.TrimSpace(r.Detail), "\n", "\n"+indent)
		fmt.Fprintf(&b, "%-4s  %-*s  %s\n", r.Status, width, r.Name, detail)
		if r.Fix != "" && (r.Status == statusFail || r.Status == statusWarn) {
			fix := strings.ReplaceAll(strings.TrimSpace(r.Fix), "\n", "\n"+indent+"     ")
			fmt.Fprintf(&b, "%sfix: %s\n", indent, fix)
		}
	}
	n := summary(results)
	fmt.Fprintf(&b, "\n%d passed, %d %s, %d failed, %d skipped\n",
		n[statusPass], n[statusWarn], wording.Plural(n[statusWarn], "warning", "warnings"), n[statusFail], n[statusSkip])
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON prints the results as one JSON array.
func writeJSON(w io.Writer, results []checkResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// Failed is the error Run returns when a check failed: exit status 1, the
// report on stdout says which.
type Failed struct{ n int }

// Error says how many checks failed.
func (e Failed) Error() string {
	return fmt.Sprintf("doctor: %d %s failed", e.n, wording.Plural(e.n, "check", "checks"))
}
