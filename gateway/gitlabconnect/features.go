package gitlabconnect

import "strings"

// Feature provider values as aiFeatureSettings reports them (lower case,
// the database enum; GitLab's admin UI compares the same strings).
const (
	ProviderSelfHosted = "self_hosted"
	ProviderVendored   = "vendored"
	ProviderDisabled   = "disabled"
	ProviderUnassigned = "unassigned"
)

// Family is the model family the appliance declares for its records by
// default: GENERAL ("general OpenAI-compatible model") is compatible with
// every feature, Agent Platform ones included (which accept only CLAUDE_3,
// GPT and GENERAL).
const DefaultFamily = "GENERAL"

// knownFeature is one AiFeatures value this version of the appliance knows
// (gitlab-admin-api.md §4, GitLab 18.8–18.9).
type knownFeature struct {
	Title string
	// Flagged features are listed by aiFeatureSettings only after the
	// self-hosted beta terms are accepted.
	Flagged bool
}

// KnownFeatures are the AiFeatures values of the GitLab versions this
// package was written against. The client never relies on the list being
// complete (it introspects the enum); a value GitLab adds later is managed
// like the others and reported as new.
var knownFeatures = map[string]knownFeature{
	"CODE_GENERATIONS":                {Title: "Code Generation"},
	"CODE_COMPLETIONS":                {Title: "Code Completion"},
	"DUO_CHAT":                        {Title: "General Chat"},
	"DUO_CHAT_EXPLAIN_CODE":           {Title: "Code Explanation"},
	"DUO_CHAT_WRITE_TESTS":            {Title: "Test Generation"},
	"DUO_CHAT_REFACTOR_CODE":          {Title: "Refactor Code"},
	"DUO_CHAT_FIX_CODE":               {Title: "Fix Code"},
	"DUO_CHAT_TROUBLESHOOT_JOB":       {Title: "Root Cause Analysis", Flagged: true},
	"GENERATE_COMMIT_MESSAGE":         {Title: "Merge Commit Message", Flagged: true},
	"SUMMARIZE_NEW_MERGE_REQUEST":     {Title: "Merge Request Summary", Flagged: true},
	"DUO_CHAT_EXPLAIN_VULNERABILITY":  {Title: "Vulnerability Explanation", Flagged: true},
	"RESOLVE_VULNERABILITY":           {Title: "Vulnerability Resolution", Flagged: true},
	"SUMMARIZE_REVIEW":                {Title: "Code Review Summary", Flagged: true},
	"GLAB_ASK_GIT_COMMAND":            {Title: "GitLab Duo for CLI", Flagged: true},
	"DUO_CHAT_SUMMARIZE_COMMENTS":     {Title: "Discussion Summary", Flagged: true},
	"REVIEW_MERGE_REQUEST":            {Title: "Code Review"},
	"DUO_AGENT_PLATFORM":              {Title: "All agents, except Agentic Chat"},
	"DUO_AGENT_PLATFORM_AGENTIC_CHAT": {Title: "Agentic Chat"},
}

// Known reports whether this version of the appliance knows the AiFeatures
// value.
func Known(feature string) bool { _, ok := knownFeatures[feature]; return ok }

// AgentPlatform reports whether an AiFeatures value is a Duo Agent Platform
// feature: GitLab checks a separate ability for those, so they are assigned
// in their own call, and anything but self_hosted sends them to GitLab's
// cloud Agent Platform service (gitlab-admin-api.md §6).
func AgentPlatform(feature string) bool { return strings.HasPrefix(feature, "DUO_AGENT_PLATFORM") }

// featureKey turns an aiFeatureSettings "feature" (code_completions) into
// its AiFeatures value (CODE_COMPLETIONS).
func featureKey(s string) string { return strings.ToUpper(s) }

// FeatureTitle is the feature's title in GitLab's admin UI, or the enum
// value for a feature this version does not know.
func FeatureTitle(feature string) string {
	if k, ok := knownFeatures[feature]; ok {
		return k.Title
	}
	return feature
}
