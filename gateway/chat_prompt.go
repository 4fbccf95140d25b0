package gateway

import (
	"sort"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// chatTools are the tools Rails can run for Duo Chat (names as GitLab's
// gateway offers them; Rails camelizes the name to find its executor). The
// input each expects matters: Rails' readers find the resource in the
// user's question, the documentation tool searches for its input.
var chatTools = []prompts.Tool{
	{Name: "issue_reader", Description: "Reads one GitLab issue (title, description, labels, comments). " +
		"Use it only when the user names an issue (#123, group/project#123, an issue URL) or is viewing one; " +
		"never to search for issues by topic. Action Input: the user's question, including the issue reference."},
	{Name: "epic_reader", Description: "Reads one GitLab epic. Use it only when the user names an epic (&123, an epic URL) " +
		"or is viewing one. Action Input: the user's question, including the epic reference."},
	{Name: "merge_request_reader", Description: "Reads one merge request (title, description, state, discussion). " +
		"Use it only when the user names a merge request (!123, a merge request URL) or is viewing one. " +
		"Action Input: the user's question, including the merge request reference."},
	{Name: "commit_reader", Description: "Reads one commit (message, author, changes). Use it only when the user names " +
		"a commit (a SHA or a commit URL) or is viewing one. Action Input: the user's question, including the commit reference."},
	{Name: "build_reader", Description: "Reads one CI/CD job, also called a build, and its log. Use it only when the user " +
		"names a job (a job ID or URL) or is viewing one. Action Input: the user's question, including the job reference."},
	{Name: "work_item_reader", Description: "Reads one work item (an issue, task, epic or other work item). Use it only " +
		"when the user names a work item (a reference or URL) or is viewing one. Action Input: the user's question, including the reference."},
	{Name: "gitlab_documentation", Description: "Searches the GitLab documentation. Use it for questions about how GitLab " +
		"and its features work: projects, groups, issues, merge requests, CI/CD, runners, settings and administration. " +
		"Action Input: a short search query of a few keywords, without punctuation."},
}

// Shares of the input budget (prompts.Settings.InputTokens): the newest
// question first, then the tool results of this step, then what the user
// attached, and what is left for older messages (at least historyShare).
const (
	questionShare   = 4 // 1/4
	scratchpadShare = 3 // 3/8
	historyShare    = 8 // 1/8 kept back for history
	minHistoryTrim  = 128
)

// trimmedNote marks text cut to fit the budget, so the model knows it saw
// only part of it.
const trimmedNote = "\n[… trimmed to fit the model's context …]"

// fit keeps the start of s within tokens, marking the cut.
func fit(s string, tokens int) string {
	if prompts.EstimateTokens(s) <= tokens {
		return s
	}
	return prompts.KeepHead(s, max(0, tokens-prompts.EstimateTokens(trimmedNote))) + trimmedNote
}

// buildChatMessages renders the conversation for the model: the system
// prompt, the history that fits, the question with its context, and the
// scratchpad of this step as the assistant's running transcript. budget
// bounds the variable parts (tokens ≈ bytes/4).
func buildChatMessages(system string, msgs []chatMessage, steps []prompts.ScratchpadStep, budget int) []model.Message {
	last := len(msgs) - 1
	for msgs[last].Role != "user" {
		last-- // validate guarantees a user message after any answer
	}
	rem := budget
	question := fit(*msgs[last].Content, budget/questionShare)
	rem -= prompts.EstimateTokens(question)

	var transcript string
	if len(steps) > 0 {
		per := budget * scratchpadShare / 8 / len(steps)
		for i := range steps {
			steps[i].Observation = fit(steps[i].Observation, per)
		}
		transcript = prompts.ScratchpadText(steps)
		rem -= prompts.EstimateTokens(transcript)
	}

	blocks := contextBlocks(msgs[last])
	sizes := make([]int, len(blocks))
	for i, b := range blocks {
		sizes[i] = prompts.EstimateTokens(b.body)
	}
	for i, n := range share(sizes, max(0, rem-budget/historyShare)) {
		blocks[i].body = fit(blocks[i].body, n)
	}
	current := renderUser(blocks, question)
	rem -= prompts.EstimateTokens(current) - prompts.EstimateTokens(question)

	// History, newest first, while it fits; the oldest kept message may be
	// cut, older ones are dropped.
	var history []model.Message
	for i := last - 1; i >= 0 && rem > 0; i-- {
		m := msgs[i]
		if m.Role == "assistant" && m.Content == nil {
			continue
		}
		text := renderHistory(m)
		if t := prompts.EstimateTokens(text); t > rem {
			if rem < minHistoryTrim {
				break
			}
			text = fit(text, rem)
			rem = 0
		} else {
			rem -= t
		}
		history = append(history, model.Message{Role: m.Role, Content: text})
	}
	// Chat templates want the history to start with the user.
	for len(history) > 0 && history[len(history)-1].Role != "user" {
		history = history[:len(history)-1]
	}

	out := make([]model.Message, 0, len(history)+3)
	out = append(out, model.Message{Role: "system", Content: system})
	for i := len(history) - 1; i >= 0; i-- {
		out = append(out, history[i])
	}
	out = append(out, model.Message{Role: "user", Content: current})
	if transcript != "" {
		out = append(out, model.Message{Role: "assistant", Content: transcript})
	}
	return out
}

// share divides total among items of the given sizes: items smaller than
// an even share keep their size, the rest split what remains.
func share(sizes []int, total int) []int {
	order := make([]int, len(sizes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return sizes[order[a]] < sizes[order[b]] })
	out := make([]int, len(sizes))
	for k, i := range order {
		n := min(sizes[i], total/(len(order)-k))
		out[i] = n
		total -= n
	}
	return out
}

// block is one piece of context shown with a user message.
type block struct {
	head, body, tail string
}

// pageNouns describe the page types GitLab sends as context.
var pageNouns = map[string]string{
	"issue": "an issue", "epic": "an epic", "merge_request": "a merge request", "commit": "a commit", "build": "a CI/CD job (build)",
}

// contextBlocks returns the context of a user message: the current page,
// the current file or selection, and the attached items.
func contextBlocks(m chatMessage) []block {
	var bs []block
	if p := m.Context; p != nil && p.Type != "" {
		typ := attr(p.Type)
		switch {
		case p.Content != nil:
			bs = append(bs, block{`<current_page type="` + typ + `">` + "\n", *p.Content, "\n</current_page>"})
		default:
			noun := pageNouns[p.Type]
			if noun == "" {
				noun = "a " + strings.ReplaceAll(typ, "_", " ")
			}
			text := "The user is viewing a page that shows " + noun + "; \"this\" or \"the current\" one refers to it."
			if p.Title != nil && *p.Title != "" {
				text += " Its title is: " + *p.Title
			}
			bs = append(bs, block{`<current_page type="` + typ + `">` + "\n", text, "\n</current_page>"})
		}
	}
	if f := m.CurrentFile; f != nil && (f.Data != "" || f.FilePath != "") {
		kind := "open file"
		if f.SelectedCode {
			kind = "selected code"
		}
		bs = append(bs, block{`<current_file path="` + attr(f.FilePath) + `" kind="` + kind + `">` + "\n", f.Data, "\n</current_file>"})
	}
	for _, x := range m.AdditionalContext {
		head := `<additional_context category="` + x.Category + `"`
		if x.ID != nil && *x.ID != "" {
			head += ` id="` + attr(*x.ID) + `"`
		}
		content := ""
		if x.Content != nil {
			content = *x.Content
		}
		bs = append(bs, block{head + ">\n", content, "\n</additional_context>"})
	}
	return bs
}

// attr makes s safe inside a double-quoted tag attribute of the prompt.
func attr(s string) string {
	return strings.NewReplacer(`"`, "'", "\n", " ", "<", "‹", ">", "›").Replace(s)
}

// renderUser writes the context blocks, then the question.
func renderUser(bs []block, question string) string {
	if len(bs) == 0 {
		return question
	}
	var b strings.Builder
	for _, x := range bs {
		b.WriteString(x.head + x.body + x.tail + "\n\n")
	}
	b.WriteString(question)
	return b.String()
}

// renderHistory renders an earlier message: a question with its context,
// or an answer preceded by the tool results it was based on (as GitLab's
// assistant_with_final_answer template does).
func renderHistory(m chatMessage) string {
	if m.Role == "user" {
		return renderUser(contextBlocks(m), *m.Content)
	}
	if m.AgentScratchpad == nil || len(*m.AgentScratchpad) == 0 {
		return *m.Content
	}
	var b strings.Builder
	for _, st := range *m.AgentScratchpad {
		b.WriteString("Observation: " + strings.TrimSpace(st.Observation) + "\n")
	}
	b.WriteString("Final Answer: " + *m.Content)
	return b.String()
}
