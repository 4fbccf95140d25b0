package gitlabconnect

import (
	"fmt"
	"net/url"
	"strings"
)

// Manual step states.
const (
	StepNeeded  = "needed" // detected as missing
	StepDone    = "done"   // detected as in place
	StepUnknown = "check"  // no API tells; check it by hand
)

// ManualStep is a setting GitLab has no API for, with the exact place in
// GitLab's UI (or configuration) where the admin makes it.
type ManualStep struct {
	Title  string `json:"title"`
	Where  string `json:"where"`
	Why    string `json:"why"`
	Status string `json:"status"`
}

// manualSteps builds the checklist for what connect cannot do, detecting
// each step's state where GitLab's answers allow it.
func manualSteps(s *Snapshot, t Target, p *Plan) []ManualStep {
	var out []ManualStep
	beta := ManualStep{
		Title: "Accept the self-hosted beta terms",
		Where: "Admin → GitLab Duo → Self-hosted models → \"Use beta models and features in GitLab Duo Self-Hosted\" (a per-admin toggle; no API)",
		Why:   "GitLab lists beta features (Root Cause Analysis, MR summary, commit message, …) and GENERAL-family models only after it; until then connect cannot assign those features",
	}
	hidden := 0
	for _, f := range s.Hidden {
		if !AgentPlatform(f) {
			hidden++
		}
	}
	switch {
	case hidden > 0:
		beta.Status = StepNeeded
		beta.Why = fmt.Sprintf("%d features are hidden until then (%s); connect cannot assign them", hidden, strings.Join(s.Hidden, ", "))
	case len(s.Rows) > 0:
		beta.Status = StepDone
	default:
		beta.Status = StepUnknown
	}
	out = append(out, beta)

	if u, err := url.Parse(t.GatewayURL); err == nil {
		st := StepUnknown
		if isPrivate(u.Hostname()) {
			st = StepNeeded
		}
		out = append(out, ManualStep{
			Title:  "Allow GitLab's outbound requests to the appliance",
			Where:  "Admin → Settings → Network → Outbound requests → \"Local IP addresses and domain names that hooks and integrations can access\": add " + u.Hostname(),
			Why:    "GitLab's outbound request blocker refuses private addresses; the allowlist is not updatable through the API (gitlab-org/gitlab#569729)",
			Status: st,
		})
		if u.Scheme == "https" {
			out = append(out, ManualStep{
				Title:  "Make GitLab trust the appliance's certificate",
				Where:  "copy the appliance's CA certificate (duo-confidential tls ca-cert) to /etc/gitlab/trusted-certs/ on every Rails and Sidekiq node, then gitlab-ctl reconfigure",
				Why:    "GitLab calls the gateway over TLS; the connection check in verify fails with \"certificate verify failed\" until then",
				Status: StepUnknown,
			})
		}
	}
	out = append(out, ManualStep{
		Title:  "Use indirect connections for Code Suggestions",
		Where:  "Admin → GitLab Duo → Change configuration → Code Suggestions connection: Indirect connections",
		Why:    "IDEs then reach the model only through GitLab and the appliance's gateway, never the appliance directly",
		Status: StepUnknown,
	})
	if t.AgentPlatformAddr == "" {
		st := StepUnknown
		for _, f := range s.Features {
			if r, ok := s.Rows[f]; ok && AgentPlatform(f) && r.Provider != ProviderSelfHosted {
				st = StepNeeded
			}
		}
		out = append(out, ManualStep{
			Title:  "Turn off the Duo Agent Platform (this appliance does not serve it)",
			Where:  "Admin → GitLab Duo → Configuration → GitLab Duo Agent Platform: off",
			Why:    "an Agent Platform feature that is not on a self-hosted model is sent to GitLab's cloud Agent Platform service",
			Status: st,
		})
		return out
	}
	secure, how := "true", "TLS (GitLab's default)"
	if !t.AgentPlatformTLS {
		secure, how = "false", "plain gRPC"
	}
	out = append(out,
		ManualStep{
			Title:  "Complete the Agent Platform onboarding",
			Where:  "Admin → GitLab Duo → GitLab Duo Agent Platform → Onboard (creates the duo-developer service account and its OAuth application)",
			Why:    "without it flows fail with \"GitLab Duo Agent Platform onboarding is incomplete, composite identity must be enabled\"",
			Status: StepUnknown,
		},
		ManualStep{
			Title:  "Set DUO_AGENT_PLATFORM_SERVICE_SECURE=" + secure,
			Where:  "/etc/gitlab/gitlab.rb: gitlab_rails['env'] = { 'DUO_AGENT_PLATFORM_SERVICE_SECURE' => '" + secure + "' }, then gitlab-ctl reconfigure",
			Why:    "GitLab dials the Agent Platform with TLS unless told otherwise; this appliance's listener speaks " + how,
			Status: StepUnknown,
		},
		ManualStep{
			Title:  "Register a runner tagged gitlab--duo",
			Where:  "Admin → CI/CD → Runners → New instance runner, tag gitlab--duo, Docker executor that reaches " + t.AgentPlatformAddr,
			Why:    "GitLab runs agent flows as CI jobs on it",
			Status: StepUnknown,
		},
		ManualStep{
			Title:  "Enable foundational flows per group",
			Where:  "Group → Settings → GitLab Duo → Foundational flows (or the Groups API: duo_foundational_flows_availability)",
			Why:    "code review and other foundational flows run only where enabled",
			Status: StepUnknown,
		})
	return out
}
