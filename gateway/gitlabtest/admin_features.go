package gitlabtest

import "strings"

// adminFeature is one AiFeatures value with GitLab's title, whether it is
// a beta ("flagged") feature listed only after the beta terms, and the
// model families it accepts (gitlab-admin-api.md §4).
type adminFeature struct {
	value, title string
	flagged      bool
	families     []string
}

var (
	allFamilies      = []string{"codegemma", "codellama", "codestral", "mistral", "mixtral", "deepseekcoder", "llama3", "claude_3", "gpt", "general"}
	chatFamilies     = []string{"mistral", "mixtral", "codestral", "claude_3", "gpt", "llama3", "general"}
	rcaFamilies      = []string{"mistral", "mixtral", "claude_3", "gpt", "llama3", "general"}
	flaggedFamilies  = rcaFamilies
	platformFamilies = []string{"claude_3", "gpt", "general"}
)

// betaFamilies are hidden from an id-less aiSelfHostedModels until the beta
// terms are accepted.
var betaFamilies = []string{"codegemma", "codellama", "deepseekcoder", "llama3", "general"}

// familyNames are GitLab's display names of the families (modelDisplayName).
var familyNames = map[string]string{
	"codegemma": "CodeGemma", "codellama": "Code-Llama", "codestral": "Codestral", "mistral": "Mistral",
	"mixtral": "Mixtral", "deepseekcoder": "DeepSeek Coder", "llama3": "Llama 3", "claude_3": "Claude 3",
	"gpt": "GPT", "general": "General",
}

var baseFeatures = []adminFeature{
	{"CODE_GENERATIONS", "Code Generation", false, allFamilies},
	{"CODE_COMPLETIONS", "Code Completion", false, allFamilies},
	{"DUO_CHAT", "General Chat", false, chatFamilies},
	{"DUO_CHAT_EXPLAIN_CODE", "Code Explanation", false, chatFamilies},
	{"DUO_CHAT_WRITE_TESTS", "Test Generation", false, chatFamilies},
	{"DUO_CHAT_REFACTOR_CODE", "Refactor Code", false, chatFamilies},
	{"DUO_CHAT_FIX_CODE", "Fix Code", false, chatFamilies},
	{"DUO_CHAT_TROUBLESHOOT_JOB", "Root Cause Analysis", true, rcaFamilies},
	{"GENERATE_COMMIT_MESSAGE", "Merge Commit Message", true, flaggedFamilies},
	{"SUMMARIZE_NEW_MERGE_REQUEST", "Merge Request Summary", true, flaggedFamilies},
	{"DUO_CHAT_EXPLAIN_VULNERABILITY", "Vulnerability Explanation", true, flaggedFamilies},
	{"RESOLVE_VULNERABILITY", "Vulnerability Resolution", true, flaggedFamilies},
	{"SUMMARIZE_REVIEW", "Code Review Summary", true, flaggedFamilies},
	{"GLAB_ASK_GIT_COMMAND", "GitLab Duo for CLI", true, flaggedFamilies},
	{"DUO_CHAT_SUMMARIZE_COMMENTS", "Discussion Summary", true, flaggedFamilies},
	{"REVIEW_MERGE_REQUEST", "Code Review", false, []string{"claude_3", "mistral", "mixtral", "gpt", "llama3", "general"}},
	{"DUO_AGENT_PLATFORM", "All agents, except Agentic Chat", false, platformFamilies},
	{"DUO_AGENT_PLATFORM_AGENTIC_CHAT", "Agentic Chat", false, platformFamilies},
}

// featureInfo returns a value's metadata; a value added by Upgrade gets a
// title made from its name and the families of its kind.
func featureInfo(value string) adminFeature {
	for _, f := range baseFeatures {
		if f.value == value {
			return f
		}
	}
	f := adminFeature{value: value, title: strings.ReplaceAll(strings.ToLower(value), "_", " "), families: chatFamilies}
	if isPlatform(value) {
		f.families = platformFamilies
	}
	return f
}

func isPlatform(value string) bool { return strings.HasPrefix(value, "DUO_AGENT_PLATFORM") }
