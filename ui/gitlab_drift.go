package ui

import (
	"fmt"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
)

// GitLabDrift is the status document's GitLab section: the drift watch's
// latest report (feature states, problems with their fixes).
type GitLabDrift struct {
	// Watching is true when gitlab_admin.watch is on.
	Watching bool `json:"watching"`
	// Polled is false until the first poll ends.
	Polled bool `json:"polled"`
	// OK is true when GitLab was read and nothing drifted.
	OK bool `json:"ok"`
	gitlabconnect.Report
}

func gitlabDrift(src Sources) *GitLabDrift {
	if !src.GitLabWatch {
		return nil
	}
	d := &GitLabDrift{Watching: true, Report: gitlabconnect.Report{Counts: map[string]int{}, Features: []gitlabconnect.FeatureState{}, Problems: []gitlabconnect.Problem{}}}
	if src.GitLabDrift == nil {
		return d
	}
	r := src.GitLabDrift()
	if r == nil {
		return d
	}
	d.Polled, d.OK, d.Report = !r.Checked.IsZero(), r.OK(), *r
	if d.Problems == nil {
		d.Problems = []gitlabconnect.Problem{}
	}
	return d
}

// gitlabComponent is the overview's GitLab line: a warning, never a reason
// for the appliance to be unready.
func gitlabComponent(d *GitLabDrift, now time.Time) (Component, bool) {
	if d == nil {
		return Component{}, false
	}
	c := Component{Name: "gitlab", Title: "GitLab configuration", Ready: d.OK}
	switch {
	case d.Err != "":
		c.Detail = "the drift watch cannot read GitLab: " + d.Err
	case !d.Polled:
		c.Detail = "the drift watch has not looked at GitLab yet"
	case len(d.Problems) > 0:
		c.Detail = fmt.Sprintf("%s: %s (checked %s)", plural(uint64(len(d.Problems)), " problem"), d.Problems[0].What, ago(now, d.Checked))
	default:
		c.Detail = fmt.Sprintf("%d features on this appliance's models, nothing drifted (checked %s)", d.Counts[gitlabconnect.StateOurs], ago(now, d.Checked))
	}
	return c, true
}
