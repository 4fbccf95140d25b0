package gitlabconnect

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Change kinds, in the order Apply makes them.
const (
	ChangeSetting        = "setting"               // a duoSettings value
	ChangeCreateModel    = "create-model"          // a new self-hosted model record
	ChangeUpdateModel    = "update-model"          // an existing record of ours, corrected
	ChangeAssign         = "assign"                // a classic feature → self_hosted model
	ChangeAssignPlatform = "assign-agent-platform" // an Agent Platform feature, in its own call
)

// Change is one thing Apply would change in GitLab.
type Change struct {
	Kind   string `json:"kind"`
	Target string `json:"target"` // setting name, model name or AiFeatures value
	Title  string `json:"title,omitempty"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Model is the record a feature is assigned to.
	Model string `json:"model,omitempty"`
}

// String renders the change like a terraform plan line.
func (c Change) String() string {
	sym := "~"
	if c.Kind == ChangeCreateModel {
		sym = "+"
	}
	what := c.Target
	if c.Title != "" && c.Title != c.Target {
		what += " (" + c.Title + ")"
	}
	return fmt.Sprintf("%s %-22s %s: %s → %s", sym, c.Kind, what, orNone(c.From), c.To)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Plan is what Apply would do to reach Target from Snapshot.
type Plan struct {
	Snapshot *Snapshot `json:"-"`
	Instance Instance  `json:"instance"`
	Changes  []Change  `json:"changes"`
	// Kept are features deliberately left as they are (a classic feature
	// an admin disabled), with why.
	Kept []string `json:"kept,omitempty"`
	// NewFeatures are AiFeatures values this version does not know: GitLab
	// added them (an upgrade); they are managed like the others.
	NewFeatures []string `json:"new_features,omitempty"`
	// Warnings need the admin's attention but do not stop Apply.
	Warnings []string     `json:"warnings,omitempty"`
	Manual   []ManualStep `json:"manual"`
}

// NoOp reports whether Apply would change nothing.
func (p *Plan) NoOp() bool { return len(p.Changes) == 0 }

// Plan reads GitLab and computes the changes that connect it to t.
// knownIDs are model record ids this appliance created before (GitLab
// hides records of beta families from its list).
func (c *Client) Plan(ctx context.Context, t Target, knownIDs []string) (*Plan, error) {
	warnings, err := t.Check()
	if err != nil {
		return nil, err
	}
	s, err := c.Read(ctx, knownIDs)
	if err != nil {
		return nil, err
	}
	p, err := PlanFrom(s, t)
	if err != nil {
		return nil, err
	}
	p.Warnings = append(warnings, p.Warnings...)
	return p, nil
}

// PlanFrom computes the plan for a snapshot already read.
func PlanFrom(s *Snapshot, t Target) (*Plan, error) {
	p := &Plan{Snapshot: s, Instance: s.Instance}
	if older(s.Instance.Version, 18, 8) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("GitLab %s is older than 18.8, the oldest version connect was written for: the admin API (all \"Experiment\" fields) may differ", s.Instance.Version))
	}
	for _, m := range t.Models {
		if !slices.Contains(s.Families, m.family()) {
			return nil, fmt.Errorf("model %s: GitLab %s has no model family %s (it has %s)", m.Name, s.Instance.Version, m.family(), strings.Join(s.Families, ", "))
		}
	}
	// Settings. Never blank: clearing aiGatewayUrl sends everything to the cloud.
	if normURL(s.Settings.AIGatewayURL) != normURL(t.GatewayURL) {
		p.Changes = append(p.Changes, Change{Kind: ChangeSetting, Target: "aiGatewayUrl", From: s.Settings.AIGatewayURL, To: normURL(t.GatewayURL)})
	}
	if t.AgentPlatformAddr != "" && normURL(s.Settings.AgentPlatformURL) != t.AgentPlatformAddr {
		p.Changes = append(p.Changes, Change{Kind: ChangeSetting, Target: "duoAgentPlatformServiceUrl", From: s.Settings.AgentPlatformURL, To: t.AgentPlatformAddr})
	}
	if t.AgentPlatformAddr == "" && s.Settings.AgentPlatformURL != "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("GitLab's Agent Platform URL is %s, but this appliance serves no Agent Platform: left as it is", s.Settings.AgentPlatformURL))
	}
	if t.TimeoutSeconds != 0 && s.Settings.TimeoutSeconds != t.TimeoutSeconds {
		p.Changes = append(p.Changes, Change{Kind: ChangeSetting, Target: "aiGatewayTimeoutSeconds", From: itoaOrEmpty(s.Settings.TimeoutSeconds), To: strconv.Itoa(t.TimeoutSeconds)})
	}
	// Model records: ours are found by name; others are never touched.
	for _, m := range t.Models {
		want := fmt.Sprintf("%s %s %s", strings.ToLower(m.family()), m.Endpoint, m.Identifier)
		cur, ok := s.Models[m.Name]
		switch {
		case !ok:
			p.Changes = append(p.Changes, Change{Kind: ChangeCreateModel, Target: m.Name, To: want})
		case !strings.EqualFold(cur.Family, m.family()) || cur.Endpoint != m.Endpoint || cur.Identifier != m.Identifier:
			p.Changes = append(p.Changes, Change{Kind: ChangeUpdateModel, Target: m.Name,
				From: fmt.Sprintf("%s %s %s", cur.Family, cur.Endpoint, cur.Identifier), To: want})
		}
	}
	// Features.
	for _, f := range s.Features {
		if !Known(f) {
			p.NewFeatures = append(p.NewFeatures, f)
		}
		row, listed := s.Rows[f]
		if !listed {
			continue // hidden until the beta terms are accepted: see Manual
		}
		platform := AgentPlatform(f)
		if platform && t.AgentPlatformAddr == "" {
			continue // see Manual
		}
		model := t.ModelFor(f)
		if row.Provider == ProviderSelfHosted && row.ModelName == model {
			continue
		}
		if row.Provider == ProviderDisabled && !platform {
			p.Kept = append(p.Kept, fmt.Sprintf("%s (%s) is disabled in GitLab: left disabled (assign it in GitLab, or with connect after enabling it, to use it)", f, row.Title))
			continue
		}
		kind := ChangeAssign
		if platform {
			kind = ChangeAssignPlatform
		}
		p.Changes = append(p.Changes, Change{Kind: kind, Target: f, Title: row.Title, From: describeRow(row), To: "self_hosted: " + model, Model: model})
	}
	p.Manual = manualSteps(s, t, p)
	return p, nil
}

// describeRow says what a feature is set to, in plan words.
func describeRow(r FeatureSetting) string {
	if r.Provider == ProviderSelfHosted {
		return "self_hosted: " + r.ModelName
	}
	return r.Provider
}

func itoaOrEmpty(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// older reports whether a GitLab version ("18.9.0-ee") is below major.minor;
// an unparsable version is not.
func older(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || (ma == major && mi < minor)
}
