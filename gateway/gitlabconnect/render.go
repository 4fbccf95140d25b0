package gitlabconnect

import (
	"fmt"
	"io"
	"strings"
)

// WritePlan prints p like a terraform plan: one line per change, then the
// warnings and the manual checklist.
func WritePlan(w io.Writer, p *Plan) {
	fmt.Fprintf(w, "GitLab %s (%s) as %s\n\n", p.Instance.URL, p.Instance.Version, p.Instance.Username)
	if p.NoOp() {
		fmt.Fprintln(w, "No changes: GitLab already points every feature it shows at this appliance.")
	} else {
		n := map[string]int{}
		for _, c := range p.Changes {
			n[c.Kind]++
		}
		fmt.Fprintf(w, "Plan: %d settings to set, %d model records to create, %d to update, %d features to assign, %d Agent Platform features to assign.\n\n",
			n[ChangeSetting], n[ChangeCreateModel], n[ChangeUpdateModel], n[ChangeAssign], n[ChangeAssignPlatform])
		for _, c := range p.Changes {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	writeList(w, "New features (added by a GitLab upgrade; assigned like the others)", p.NewFeatures)
	writeList(w, "Left as they are", p.Kept)
	writeList(w, "Warnings", p.Warnings)
	WriteManual(w, p.Manual)
}

// WriteResult prints what Apply did, one line per change.
func WriteResult(w io.Writer, r *Result) {
	if len(r.Changes) == 0 {
		fmt.Fprintln(w, "Nothing changed.")
		return
	}
	fmt.Fprintf(w, "Applied: %d done, %d failed, %d not attempted.\n\n", r.Count(OutcomeDone), r.Count(OutcomeFailed), r.Count(OutcomeNotAttempted))
	for _, c := range r.Changes {
		mark := map[string]string{OutcomeDone: "ok  ", OutcomeFailed: "FAIL", OutcomeNotAttempted: "--  "}[c.Outcome]
		line := fmt.Sprintf("  %s %s", mark, c.Change)
		if c.Error != "" {
			line += "\n         " + c.Error
		}
		fmt.Fprintln(w, line)
	}
	if r.Err != nil {
		fmt.Fprintf(w, "\nStopped: %v\nThe changes marked -- were not attempted; run the same command again when GitLab answers: it completes the job.\n", r.Err)
	}
}

// WriteVerification prints verify's checks and the drift findings.
func WriteVerification(w io.Writer, v *Verification) {
	fmt.Fprintln(w, "Verify:")
	for _, c := range v.Checks {
		mark := "FAIL"
		if c.OK {
			mark = "ok  "
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, c.Name, c.Detail)
	}
	if v.Drift == nil {
		return
	}
	if len(v.Drift.Problems) == 0 {
		fmt.Fprintf(w, "  ok   features: %d on this appliance's models, %d disabled, %d hidden, %d not served here\n",
			v.Drift.Counts[StateOurs], v.Drift.Counts[StateDisabled], v.Drift.Counts[StateHidden], v.Drift.Counts[StateUnmanaged])
		return
	}
	for _, p := range v.Drift.Problems {
		fmt.Fprintf(w, "  FAIL %s\n       fix: %s\n", p.What, p.Fix)
	}
}

// WriteManual prints the checklist of steps GitLab has no API for.
func WriteManual(w io.Writer, steps []ManualStep) {
	if len(steps) == 0 {
		return
	}
	fmt.Fprintln(w, "\nManual steps (GitLab has no API for these):")
	for _, s := range steps {
		fmt.Fprintf(w, "  [%-6s] %s\n           where: %s\n           why:   %s\n", s.Status, s.Title, s.Where, s.Why)
	}
}

func writeList(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n  %s\n", title, strings.Join(items, "\n  "))
}
