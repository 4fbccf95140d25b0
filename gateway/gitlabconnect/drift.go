package gitlabconnect

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Feature states the drift watch reports (metric duo_gitlab_features{state}).
const (
	StateOurs       = "self_hosted" // on the appliance's model: correct
	StateOtherModel = "other_model" // self_hosted, but on a record that is not the appliance's
	StateVendored   = "vendored"    // a GitLab-managed model: GitLab's cloud
	StateUnassigned = "unassigned"  // no model: DAP → GitLab's cloud, classic → no model metadata
	StateDisabled   = "disabled"    // turned off in GitLab
	StateHidden     = "hidden"      // not listed (beta terms not accepted)
	StateUnmanaged  = "not_served"  // an Agent Platform feature, and the appliance serves no Agent Platform
)

// States lists every feature state, for metrics that must show zeros.
var States = []string{StateOurs, StateOtherModel, StateVendored, StateUnassigned, StateDisabled, StateHidden, StateUnmanaged}

// cloudProbes are cloudConnectorStatus probe names GitLab adds only when
// some feature is vendored (gitlab-admin-api.md §5): their presence means
// something goes to GitLab's cloud.
var cloudProbes = []string{"license_probe", "access_probe", "token_probe", "end_to_end_probe"}

// FeatureState is one feature as the watch sees it.
type FeatureState struct {
	Feature string `json:"feature"`
	Title   string `json:"title"`
	State   string `json:"state"`
	Model   string `json:"model,omitempty"`
}

// Problem is one drift finding: what is wrong and how to fix it.
type Problem struct {
	Feature string `json:"feature,omitempty"`
	What    string `json:"what"`
	Fix     string `json:"fix"`
	// Repairable problems are fixed by re-assigning features to the
	// appliance's model (auto_repair does that, and only that).
	Repairable bool `json:"repairable"`
}

// String is the problem in one line.
func (p Problem) String() string { return p.What + " — fix: " + p.Fix }

// Report is one look at GitLab by the drift watch or verify.
type Report struct {
	Checked  time.Time      `json:"checked"`
	GitLab   Instance       `json:"gitlab"`
	Features []FeatureState `json:"features"`
	Counts   map[string]int `json:"counts"`
	Problems []Problem      `json:"problems"`
	// Repaired lists the features auto_repair re-assigned in this poll.
	Repaired []string `json:"repaired,omitempty"`
	// Err is set when GitLab could not be read; Features then are empty.
	Err string `json:"error,omitempty"`
}

// OK reports whether GitLab was read and nothing drifted.
func (r *Report) OK() bool { return r.Err == "" && len(r.Problems) == 0 }

// Evaluate compares a snapshot with the target. managed is the feature
// set the appliance assigned before (nil: only the built-in list), so a
// value GitLab added since is reported as new; probes are
// cloudConnectorStatus probe names (nil: not checked).
func Evaluate(s *Snapshot, t Target, managed []string, probes []string) *Report {
	r := &Report{Checked: time.Now().UTC(), GitLab: s.Instance, Counts: map[string]int{}}
	for _, st := range States {
		r.Counts[st] = 0
	}
	fix := "run `duo-confidential gitlab connect --apply` (or enable gitlab_admin.auto_repair)"
	if normURL(s.Settings.AIGatewayURL) != normURL(t.GatewayURL) {
		what := fmt.Sprintf("GitLab's AI gateway URL is %q, not this appliance (%s)", s.Settings.AIGatewayURL, t.GatewayURL)
		if s.Settings.AIGatewayURL == "" {
			what = "GitLab's AI gateway URL is empty: GitLab sends Duo features to its cloud gateway"
		}
		r.Problems = append(r.Problems, Problem{What: what, Fix: "Admin → GitLab Duo → Change configuration → Local AI Gateway URL: " + t.GatewayURL + ", or " + fix})
	}
	if t.AgentPlatformAddr != "" && normURL(s.Settings.AgentPlatformURL) != t.AgentPlatformAddr {
		r.Problems = append(r.Problems, Problem{What: fmt.Sprintf("GitLab's Agent Platform URL is %q, not this appliance (%s)", s.Settings.AgentPlatformURL, t.AgentPlatformAddr),
			Fix: "Admin → GitLab Duo → Change configuration → Local URL for the GitLab Duo Agent Platform service: " + t.AgentPlatformAddr + ", or " + fix})
	}
	for _, f := range s.Features {
		row, listed := s.Rows[f]
		fs := FeatureState{Feature: f, Title: FeatureTitle(f)}
		if listed {
			fs.Title = row.Title
		}
		platform := AgentPlatform(f)
		want := t.ModelFor(f)
		where := fmt.Sprintf("Admin → GitLab Duo → Self-hosted models → AI-native features → %s: choose %s", fs.Title, want)
		switch {
		case !listed:
			fs.State = StateHidden
		case platform && t.AgentPlatformAddr == "":
			fs.State = StateUnmanaged
		case row.Provider == ProviderSelfHosted && row.ModelName == want:
			fs.State = StateOurs
		case row.Provider == ProviderSelfHosted:
			fs.State, fs.Model = StateOtherModel, row.ModelName
			r.Problems = append(r.Problems, Problem{Feature: f, Repairable: true,
				What: fmt.Sprintf("%s (%s) uses the model record %q, not the appliance's %q", fs.Title, f, row.ModelName, want),
				Fix:  where + ", or " + fix})
		case row.Provider == ProviderVendored:
			fs.State = StateVendored
			r.Problems = append(r.Problems, Problem{Feature: f, Repairable: true,
				What: fmt.Sprintf("%s (%s) is on a GitLab-managed model: its prompts and code go to GitLab's cloud", fs.Title, f),
				Fix:  where + ", or " + fix})
		case row.Provider == ProviderDisabled && !platform:
			fs.State = StateDisabled
		case row.Provider == ProviderDisabled:
			fs.State = StateDisabled
			r.Problems = append(r.Problems, Problem{Feature: f, Repairable: true,
				What: fmt.Sprintf("%s (%s) is disabled, and GitLab then routes Agent Platform sessions to its cloud service", fs.Title, f),
				Fix:  where + ", or turn the Agent Platform off"})
		default:
			fs.State = StateUnassigned
			what := fmt.Sprintf("%s (%s) has no model: GitLab calls the gateway without model details", fs.Title, f)
			if platform {
				what = fmt.Sprintf("%s (%s) has no model: GitLab sends it to its cloud Agent Platform service", fs.Title, f)
			}
			if !Known(f) && !slices.Contains(managed, f) {
				what = fmt.Sprintf("GitLab added the feature %s (an upgrade?) and it has no model", f)
			}
			r.Problems = append(r.Problems, Problem{Feature: f, Repairable: true, What: what, Fix: where + ", or " + fix})
		}
		r.Counts[fs.State]++
		r.Features = append(r.Features, fs)
	}
	var cloud []string
	for _, p := range probes {
		if slices.Contains(cloudProbes, p) {
			cloud = append(cloud, p)
		}
	}
	if len(cloud) > 0 {
		sort.Strings(cloud)
		r.Problems = append(r.Problems, Problem{What: "GitLab's health check runs cloud probes (" + strings.Join(slices.Compact(cloud), ", ") + "): some feature is on a GitLab-managed model",
			Fix: "find it under Admin → GitLab Duo → Self-hosted models → AI-native features, or " + fix})
	}
	return r
}
