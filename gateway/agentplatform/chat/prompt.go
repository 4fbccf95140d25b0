package chat

import (
	"fmt"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// systemPrompt is this project's own instruction text for general
// OpenAI-compatible models.
func systemPrompt(w *gitlabapi.Workflow, now time.Time) string {
	var b strings.Builder
	b.WriteString("You are GitLab Duo, an assistant inside a GitLab instance. You help developers with their projects, issues, merge requests, pipelines and code.\n")
	b.WriteString("Use the tools to look things up instead of guessing; call a tool when the answer depends on GitLab data. Lists come 20 per page: ask for the next page only when needed.\n")
	b.WriteString("Tools that change something (comments, issues, merge requests, commits, files, commands) run only after the user approves them; if the user rejects one, respect that and continue without it.\n")
	b.WriteString("Answer in Markdown, concisely, and cite the issues, merge requests or files you used.\n")
	fmt.Fprintf(&b, "Today is %s.\n", now.UTC().Format("2006-01-02"))
	if w.ProjectID != "" {
		fmt.Fprintf(&b, "The current project is %q (id %s", w.ProjectName, w.ProjectID)
		if w.ProjectWebURL != "" {
			fmt.Fprintf(&b, ", %s", w.ProjectWebURL)
		}
		b.WriteString("); tools default to it.\n")
	}
	return b.String()
}

// Token estimates: no tokenizer for every model, so count conservatively
// (about 3 bytes per token for code and JSON) and keep a reserve for the
// answer.
const (
	bytesPerToken   = 3
	answerTokens    = 2048
	perMessageToken = 8
)

func estimateTokens(m model.Message) int {
	n := len(m.Content) + len(m.ToolCallID)
	for _, c := range m.ToolCalls {
		n += len(c.Function.Name) + len(c.Function.Arguments) + len(c.ID)
	}
	return n/bytesPerToken + perMessageToken
}

func toolsTokens(ts []model.Tool) int {
	n := 0
	for _, t := range ts {
		n += len(t.Function.Name) + len(t.Function.Description) + 40*len(t.Function.Parameters)
	}
	return n/bytesPerToken + 200
}

// trimHistory keeps the newest messages that fit the model's context
// window after the system prompt, tool specs and the answer reserve. It
// never starts with a tool result whose call was dropped, and cuts an
// oversized single tool result rather than sending nothing.
func trimHistory(system string, history []model.Message, tools []model.Tool, window int) []model.Message {
	if window <= 0 {
		window = 8192
	}
	budget := window - answerTokens - toolsTokens(tools) - len(system)/bytesPerToken - perMessageToken
	start := len(history)
	used := 0
	for start > 0 {
		c := estimateTokens(history[start-1])
		if used+c > budget {
			break
		}
		used += c
		start--
	}
	kept := history[start:]
	for len(kept) > 0 && kept[0].Role == "tool" {
		kept = kept[1:]
	}
	if len(kept) == 0 && len(history) > 0 {
		// The last message alone is too big: send its head.
		last := history[len(history)-1]
		if last.Role == "tool" {
			last = model.Message{Role: "user", Content: last.Content}
		}
		max := budget * bytesPerToken
		if max < 0 {
			max = 0
		}
		if len(last.Content) > max {
			last.Content = last.Content[:max]
		}
		kept = []model.Message{last}
	}
	out := make([]model.Message, 0, len(kept)+1)
	out = append(out, model.Message{Role: "system", Content: system})
	return append(out, kept...)
}
