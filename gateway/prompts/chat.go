package prompts

import (
	"strings"
	"unicode"
)

// Tool is a GitLab chat tool offered to the model (name as GitLab runs it,
// e.g. "issue_reader", and a one-paragraph description).
type Tool struct {
	Name        string
	Description string
}

// ScratchpadStep is one earlier ReAct iteration Rails sends back
// (agent_scratchpad: the action and the tool's observation).
type ScratchpadStep struct {
	Thought     string
	Tool        string
	ToolInput   string
	Observation string
}

// ChatSystemPrompt returns the Duo Chat system prompt: who the assistant
// is, the tools, and the exact reply format ParseReAct accepts.
// unavailable lists resources GitLab says the user cannot use
// ("Pipelines", "Vulnerabilities"); date is today's date as text, or "".
func ChatSystemPrompt(tools []Tool, unavailable []string, date string) string {
	var b strings.Builder
	b.WriteString("You are GitLab Duo Chat, an assistant for software development and GitLab. ")
	b.WriteString("Answer questions about code, GitLab features and the user's GitLab resources accurately and concisely, using Markdown.\n")
	if date != "" {
		b.WriteString("Today is " + date + ".\n")
	}
	if len(tools) > 0 {
		b.WriteString("\nYou can use these tools to read GitLab data:\n")
		for _, t := range tools {
			b.WriteString("- " + t.Name + ": " + oneLine(t.Description) + "\n")
		}
		b.WriteString("\nUse a tool only when you need data you do not have. To use one, reply with exactly:\n")
		b.WriteString("Thought: <why you need the tool>\nAction: <tool name from the list>\nAction Input: <the input for the tool>\n")
		b.WriteString("Then stop: the tool's result arrives as \"Observation:\". Use at most one tool per reply.\n")
		b.WriteString("\nWhen you can answer, reply with:\n")
	} else {
		b.WriteString("\nReply with:\n")
	}
	b.WriteString("Thought: <one short sentence>\nFinal Answer: <your answer to the user>\n")
	if len(unavailable) > 0 {
		b.WriteString("\nThe user has no access to: " + strings.Join(unavailable, ", ") + ". If the question needs them, say so.\n")
	}
	b.WriteString("Never invent tool results, issue numbers or URLs.")
	return b.String()
}

// ScratchpadText renders earlier iterations as the assistant's running
// transcript, ending with "Thought:" so the model continues the loop.
func ScratchpadText(steps []ScratchpadStep) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString("Thought: " + strings.TrimSpace(s.Thought) + "\n")
		b.WriteString("Action: " + strings.TrimSpace(s.Tool) + "\n")
		b.WriteString("Action Input: " + strings.TrimSpace(s.ToolInput) + "\n")
		b.WriteString("Observation: " + strings.TrimSpace(s.Observation) + "\n")
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// MatchTool maps the tool name a model wrote to one of tools, ignoring
// case, spaces, hyphens, underscores and CamelCase ("IssueReader",
// "issue reader" → "issue_reader"). ok is false when none matches; GitLab
// then gets an error event "tool not available".
func MatchTool(name string, tools []Tool) (string, bool) {
	key := toolKey(name)
	if key == "" {
		return "", false
	}
	for _, t := range tools {
		if toolKey(t.Name) == key {
			return t.Name, true
		}
	}
	return "", false
}

func toolKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	k := b.String()
	return strings.TrimSuffix(k, "tool")
}
