package prompts

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// DiffInput is the input of diff-based features.
type DiffInput struct {
	Title, Description         string
	SourceBranch, TargetBranch string
	Diff                       string
}

// CodeInput is the input of the code slash commands (/explain, /tests,
// /refactor, /fix).
type CodeInput struct {
	FileName    string
	Code        string // the selected code
	Instruction string // extra user instruction, may be empty
}

// VulnerabilityInput describes a vulnerability finding.
type VulnerabilityInput struct {
	Title, Description, Severity, Identifiers string
	FileName, Code                            string
}

func feature(f Feature, sys, usr string) ChatPrompt {
	return ChatPrompt{Feature: f, Messages: []Message{system(sys), user(usr)}, Settings: mustSettings(f)}
}

func section(b *strings.Builder, name, body string) {
	if body = strings.TrimSpace(body); body != "" {
		fmt.Fprintf(b, "<%s>\n%s\n</%s>\n", name, body, name)
	}
}

// CommitMessage builds the generate_commit_message prompt.
func CommitMessage(diff string) ChatPrompt {
	st := mustSettings(GenerateCommitMessage)
	var u strings.Builder
	section(&u, "diff", truncateMiddle(diff, st.InputTokens))
	return feature(GenerateCommitMessage,
		"Write a Git commit message for the staged diff. First line: imperative summary, at most 72 characters. "+
			"Then a blank line and a short body explaining what changed and why, wrapped at 72 characters. Output only the message.",
		u.String())
}

// MergeRequestSummary builds the summarize_new_merge_request prompt.
func MergeRequestSummary(in DiffInput) ChatPrompt {
	st := mustSettings(SummarizeNewMergeRequest)
	var u strings.Builder
	section(&u, "title", in.Title)
	section(&u, "branches", strings.TrimSpace(in.SourceBranch+" → "+in.TargetBranch))
	section(&u, "diff", truncateMiddle(in.Diff, st.InputTokens))
	return feature(SummarizeNewMergeRequest,
		"Summarize the changes of a merge request for its description: a short overview, then a Markdown bullet list of the main changes. "+
			"Describe what the code does, not line-by-line edits. Output only the summary.", u.String())
}

// ReviewSummary builds the summarize_review prompt from review comments.
func ReviewSummary(comments string) ChatPrompt {
	st := mustSettings(SummarizeReview)
	var u strings.Builder
	section(&u, "review_comments", truncateHead(comments, st.InputTokens))
	return feature(SummarizeReview,
		"Summarize these code review comments for the merge request author: the requested changes and open questions as a short Markdown list. "+
			"Output only the summary.", u.String())
}

// MergeRequestReview builds the review_merge_request prompt.
func MergeRequestReview(in DiffInput) ChatPrompt {
	st := mustSettings(ReviewMergeRequest)
	var u strings.Builder
	section(&u, "title", in.Title)
	section(&u, "description", truncateHead(in.Description, 2000))
	section(&u, "diff", truncateMiddle(in.Diff, st.InputTokens))
	return feature(ReviewMergeRequest,
		"You are a careful senior code reviewer. Review the merge request diff. Report real problems only: bugs, security issues, "+
			"missing error handling, unclear code. For each: the file and line, the problem, and a concrete suggestion. "+
			"If the change looks good, say so briefly. Use Markdown.", u.String())
}

// VulnerabilityExplanation builds the chat/explain_vulnerability prompt.
func VulnerabilityExplanation(in VulnerabilityInput) ChatPrompt {
	return vulnPrompt(ChatExplainVulnerability, in,
		"Explain this security vulnerability to a developer: what it is, how it could be exploited in this code, and how to fix it. Use Markdown.")
}

// VulnerabilityResolution builds the resolve_vulnerability prompt.
func VulnerabilityResolution(in VulnerabilityInput) ChatPrompt {
	return vulnPrompt(ResolveVulnerability, in,
		"Fix this security vulnerability. Reply with the corrected code for the affected code in one fenced code block, "+
			"then one short paragraph on what you changed. Keep behaviour otherwise unchanged.")
}

func vulnPrompt(f Feature, in VulnerabilityInput, sys string) ChatPrompt {
	st := mustSettings(f)
	var u strings.Builder
	section(&u, "title", in.Title)
	section(&u, "severity", in.Severity)
	section(&u, "identifiers", in.Identifiers)
	section(&u, "description", truncateHead(in.Description, 2000))
	section(&u, "file", in.FileName)
	section(&u, "code", truncateMiddle(in.Code, st.InputTokens))
	return feature(f, sys, u.String())
}

// Description builds the generate_description prompt (issue or merge
// request description from a draft or notes).
func Description(draft, template string) ChatPrompt {
	st := mustSettings(GenerateDescription)
	var u strings.Builder
	section(&u, "draft", truncateHead(draft, st.InputTokens))
	section(&u, "template", template)
	return feature(GenerateDescription,
		"Write a clear GitLab description in Markdown from the draft, following the template when one is given. Output only the description.", u.String())
}

// DiscussionSummary builds the chat/summarize_comments prompt.
func DiscussionSummary(notes string) ChatPrompt {
	st := mustSettings(ChatSummarizeComments)
	var u strings.Builder
	section(&u, "comments", truncateMiddle(notes, st.InputTokens))
	return feature(ChatSummarizeComments,
		"Summarize this GitLab discussion: the main points, decisions, and open questions, as a short Markdown list.", u.String())
}

// CodeTask builds the chat/explain_code, chat/write_tests,
// chat/refactor_code and chat/fix_code prompts.
func CodeTask(f Feature, in CodeInput) (ChatPrompt, error) {
	tasks := map[Feature]string{
		ChatExplainCode:  "Explain what the code does, step by step, for a developer new to it. Use Markdown.",
		ChatWriteTests:   "Write unit tests for the code with the project's usual test framework for this language. Reply with the tests in a fenced code block and a short note on what they cover.",
		ChatRefactorCode: "Refactor the code to be clearer and simpler without changing behaviour. Reply with the refactored code in a fenced code block and a short list of changes.",
		ChatFixCode:      "Find and fix the bugs in the code. Reply with the fixed code in a fenced code block and a short list of the fixes.",
	}
	task, ok := tasks[f]
	if !ok {
		return ChatPrompt{}, fmt.Errorf("%w: %q is not a code task", ErrUnknownPrompt, string(f))
	}
	st := mustSettings(f)
	lang, _ := DetectLanguage(in.FileName, "")
	var u strings.Builder
	section(&u, "file", in.FileName)
	section(&u, "code", "```"+lang.Fence+"\n"+truncateMiddle(in.Code, st.InputTokens)+"\n```")
	section(&u, "instruction", in.Instruction)
	return feature(f, "You are an expert software engineer. "+task, u.String()), nil
}

// JobTroubleshooting builds the chat/troubleshoot_job prompt from a CI log.
func JobTroubleshooting(jobName, log string) ChatPrompt {
	st := mustSettings(ChatTroubleshootJob)
	var u strings.Builder
	section(&u, "job", jobName)
	// The end of a log holds the failure.
	section(&u, "log", KeepTail(log, st.InputTokens))
	return feature(ChatTroubleshootJob,
		"A GitLab CI/CD job failed. From its log, find the root cause and suggest a concrete fix (code or .gitlab-ci.yml change). Use Markdown.", u.String())
}

// Render builds the prompt of a /v1/prompts/<id> call from its JSON
// inputs. Known input names are mapped to the typed templates; inputs the
// template does not know are appended as extra context, so nothing GitLab
// sends is lost. An unknown id yields an error wrapping ErrUnknownPrompt.
func Render(id string, inputs map[string]any) (ChatPrompt, error) {
	f, err := LookupFeature(id)
	if err != nil {
		return ChatPrompt{}, err
	}
	in := inputReader{m: inputs, used: map[string]bool{"current_date": true}}
	var p ChatPrompt
	switch f {
	case ModelConfigurationCheck:
		return feature(f, "Reply with one word.", "Say hello."), nil
	case GenerateCommitMessage:
		p = CommitMessage(in.get("diff", "diffs", "staged_diff", "content"))
	case SummarizeNewMergeRequest:
		p = MergeRequestSummary(in.diffInput())
	case ReviewMergeRequest:
		p = MergeRequestReview(in.diffInput())
	case SummarizeReview:
		p = ReviewSummary(in.get("draft_notes_content", "notes", "comments", "content"))
	case ResolveVulnerability, ChatExplainVulnerability:
		v := VulnerabilityInput{
			Title: in.get("title", "name", "vulnerability_title"), Description: in.get("description", "vulnerability_description"),
			Severity: in.get("severity"), Identifiers: in.get("identifiers", "identifiers_list"),
			FileName: in.get("file_name", "filename", "file"), Code: in.get("code", "vulnerable_code", "source_code", "content"),
		}
		if f == ResolveVulnerability {
			p = VulnerabilityResolution(v)
		} else {
			p = VulnerabilityExplanation(v)
		}
	case GenerateDescription:
		p = Description(in.get("description", "content", "draft", "input"), in.get("template", "description_template"))
	case ChatSummarizeComments:
		p = DiscussionSummary(in.get("notes_content", "notes", "comments", "content"))
	case ChatExplainCode, ChatWriteTests, ChatRefactorCode, ChatFixCode:
		p, err = CodeTask(f, CodeInput{
			FileName:    in.get("file_name", "filename", "file_path"),
			Code:        in.get("selected_text", "selected_code", "code", "content"),
			Instruction: in.get("input", "instruction", "user_input", "question"),
		})
		if err != nil {
			return ChatPrompt{}, err
		}
	case ChatTroubleshootJob:
		p = JobTroubleshooting(in.get("job_name", "name"), in.get("job_log", "log", "content"))
	case CategorizeQuestion:
		p = feature(f, "Classify the user's question. Reply with a single JSON object with the keys \"category\" and \"detailed_category\", nothing else.",
			in.get("question", "input", "content"))
	case GlabAskGitCommand:
		p = feature(f, "Turn the request into the git or glab command(s) that do it. Reply with the commands in a fenced shell block and one line of explanation each.",
			in.get("prompt", "question", "input", "content"))
	default:
		// code_completions, code_generations and duo_chat have their own
		// routes and builders.
		return ChatPrompt{}, fmt.Errorf("%w: %q is not served by /v1/prompts", ErrUnknownPrompt, id)
	}
	if extra := in.rest(mustSettings(f).InputTokens / 4); extra != "" {
		last := &p.Messages[len(p.Messages)-1]
		last.Content += "\nAdditional context:\n" + extra
	}
	return p, nil
}

type inputReader struct {
	m    map[string]any
	used map[string]bool
}

// get returns the first present input among keys as text.
func (r inputReader) get(keys ...string) string {
	for _, k := range keys {
		if v, ok := r.m[k]; ok && !r.used[k] {
			r.used[k] = true
			return toText(v)
		}
	}
	return ""
}

func (r inputReader) diffInput() DiffInput {
	return DiffInput{
		Title: r.get("title", "mr_title"), Description: r.get("description", "mr_description"),
		SourceBranch: r.get("source_branch"), TargetBranch: r.get("target_branch"),
		Diff: r.get("diff", "extracted_diff", "diff_lines", "diffs", "content"),
	}
}

// rest renders the inputs no template used, within tokens.
func (r inputReader) rest(tokens int) string {
	keys := make([]string, 0, len(r.m))
	for k := range r.m {
		if !r.used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		section(&b, k, toText(r.m[k]))
	}
	return truncateHead(b.String(), tokens)
}

func toText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}
