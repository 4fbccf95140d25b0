package prompts

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrUnknownPrompt is returned for a prompt or feature id this package has
// no template for; the HTTP layer answers 404 "Prompt '<id>' not found".
var ErrUnknownPrompt = errors.New("prompts: unknown prompt")

// Feature identifies one Duo feature. Its value is the prompt id GitLab
// uses in POST /v1/prompts/<id> where there is one, and an appliance name
// for the features GitLab calls on their own routes.
type Feature string

// Features served on their own routes.
const (
	// CodeCompletions is POST /v2/code/completions (prompt id
	// code_suggestions/completions).
	CodeCompletions Feature = "code_completions"
	// CodeGenerations is POST /v3/code/completions and /v4/code/suggestions
	// (prompt id code_suggestions/generations).
	CodeGenerations Feature = "code_generations"
	// DuoChat is the ReAct step of POST /v2/chat/agent (prompt id chat/react).
	DuoChat Feature = "duo_chat"
)

// Non-chat features called as POST /v1/prompts/<id> (gitlab-ai-gateway.md §1.6).
const (
	GenerateCommitMessage    Feature = "generate_commit_message"
	SummarizeNewMergeRequest Feature = "summarize_new_merge_request"
	SummarizeReview          Feature = "summarize_review"
	ReviewMergeRequest       Feature = "review_merge_request"
	ResolveVulnerability     Feature = "resolve_vulnerability"
	GenerateDescription      Feature = "generate_description"
	CategorizeQuestion       Feature = "categorize_question"
	GlabAskGitCommand        Feature = "glab_ask_git_command"
	// ModelConfigurationCheck is GitLab's "Test connection" button; it must
	// answer within 3 s, so it asks for a handful of tokens.
	ModelConfigurationCheck Feature = "model_configuration/check"
)

// Chat slash-command tools called as POST /v1/prompts/chat/<tool>.
const (
	ChatExplainCode          Feature = "chat/explain_code"
	ChatWriteTests           Feature = "chat/write_tests"
	ChatRefactorCode         Feature = "chat/refactor_code"
	ChatFixCode              Feature = "chat/fix_code"
	ChatTroubleshootJob      Feature = "chat/troubleshoot_job"
	ChatSummarizeComments    Feature = "chat/summarize_comments"
	ChatExplainVulnerability Feature = "chat/explain_vulnerability"
)

// Settings are the per-feature model call parameters.
type Settings struct {
	// MaxTokens is the max_tokens of the model call.
	MaxTokens int
	// Temperature is the sampling temperature.
	Temperature float64
	// Stop lists stop sequences (at most 4, the OpenAI limit); nil for none.
	Stop []string
	// InputTokens is the budget for the largest variable input (a diff, a
	// job log, the code around the cursor); longer inputs are trimmed.
	InputTokens int
}

// settings holds the defaults for every known feature. Chat-style outputs
// get a few thousand tokens; completion is short so it stays interactive.
var settings = map[Feature]Settings{
	CodeCompletions:          {MaxTokens: 128, Temperature: 0, InputTokens: 2048},
	CodeGenerations:          {MaxTokens: 2048, Temperature: 0.2, InputTokens: 8192},
	DuoChat:                  {MaxTokens: 2048, Temperature: 0.1, Stop: []string{"\nObservation:"}, InputTokens: 16000},
	GenerateCommitMessage:    {MaxTokens: 256, Temperature: 0.2, InputTokens: 12000},
	SummarizeNewMergeRequest: {MaxTokens: 1024, Temperature: 0.2, InputTokens: 16000},
	SummarizeReview:          {MaxTokens: 1024, Temperature: 0.2, InputTokens: 12000},
	ReviewMergeRequest:       {MaxTokens: 4096, Temperature: 0.1, InputTokens: 24000},
	ResolveVulnerability:     {MaxTokens: 2048, Temperature: 0.1, InputTokens: 12000},
	GenerateDescription:      {MaxTokens: 1024, Temperature: 0.3, InputTokens: 8000},
	CategorizeQuestion:       {MaxTokens: 256, Temperature: 0, InputTokens: 4000},
	GlabAskGitCommand:        {MaxTokens: 512, Temperature: 0.1, InputTokens: 2000},
	ModelConfigurationCheck:  {MaxTokens: 16, Temperature: 0, InputTokens: 64},
	ChatExplainCode:          {MaxTokens: 2048, Temperature: 0.1, InputTokens: 12000},
	ChatWriteTests:           {MaxTokens: 3072, Temperature: 0.1, InputTokens: 12000},
	ChatRefactorCode:         {MaxTokens: 3072, Temperature: 0.1, InputTokens: 12000},
	ChatFixCode:              {MaxTokens: 3072, Temperature: 0.1, InputTokens: 12000},
	ChatTroubleshootJob:      {MaxTokens: 2048, Temperature: 0.1, InputTokens: 16000},
	ChatSummarizeComments:    {MaxTokens: 1024, Temperature: 0.2, InputTokens: 16000},
	ChatExplainVulnerability: {MaxTokens: 2048, Temperature: 0.1, InputTokens: 12000},
}

// aliases maps GitLab's prompt ids for the features that have their own
// routes to our Feature names.
var aliases = map[string]Feature{
	"code_suggestions/completions": CodeCompletions,
	"code_suggestions/generations": CodeGenerations,
	"chat/react":                   DuoChat,
	"explain_vulnerability":        ChatExplainVulnerability,
	"summarize_comments":           ChatSummarizeComments,
}

// Features returns every known feature (in no particular order).
func Features() []Feature {
	out := make([]Feature, 0, len(settings))
	for f := range settings {
		out = append(out, f)
	}
	return out
}

// LookupFeature resolves a prompt id as it appears in the URL of
// POST /v1/prompts/<id> (URL-escaped "model_configuration%2Fcheck" and
// surrounding slashes are accepted) or a Feature name. Unknown ids yield an
// error wrapping ErrUnknownPrompt.
func LookupFeature(id string) (Feature, error) {
	s := id
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	s = strings.Trim(strings.TrimSpace(s), "/")
	if f, ok := aliases[s]; ok {
		return f, nil
	}
	if _, ok := settings[Feature(s)]; ok {
		return Feature(s), nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownPrompt, id)
}

// SettingsFor returns the model call settings of f, or an error wrapping
// ErrUnknownPrompt. The Stop slice is a copy the caller may change.
func SettingsFor(f Feature) (Settings, error) {
	s, ok := settings[f]
	if !ok {
		return Settings{}, fmt.Errorf("%w: %q", ErrUnknownPrompt, string(f))
	}
	s.Stop = append([]string(nil), s.Stop...)
	return s, nil
}

func mustSettings(f Feature) Settings {
	s, err := SettingsFor(f)
	if err != nil {
		panic(err) // programming error: every constant has settings
	}
	return s
}

// Message is one OpenAI chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatPrompt is a chat-completions request body without the model name.
type ChatPrompt struct {
	Feature  Feature
	Messages []Message
	Settings Settings
}

func system(s string) Message { return Message{Role: "system", Content: s} }
func user(s string) Message   { return Message{Role: "user", Content: s} }
