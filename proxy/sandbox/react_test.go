package sandbox

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// reactSystem is the system prompt the gateway sends for Duo Chat.
var reactSystem = prompts.ChatSystemPrompt([]prompts.Tool{
	{Name: "issue_reader", Description: "Reads an issue."},
	{Name: "gitlab_documentation", Description: "Searches the docs."},
}, nil, "")

func reactRequest(t *testing.T, msgs ...message) *genRequest {
	t.Helper()
	sys, _ := json.Marshal(reactSystem)
	return &genRequest{Model: ModelChat, Messages: append([]message{{Role: "system", Content: sys}}, msgs...)}
}

func msg(role, content string) message {
	b, _ := json.Marshal(content)
	return message{Role: role, Content: b}
}

func TestReActConvention(t *testing.T) {
	limit := 2048
	tests := []struct {
		name   string
		g      *genRequest
		want   string // "" means the usual reply
		finish string
	}{
		{"use a listed tool", reactRequest(t, msg("user", "What is it?"), msg("assistant", "A thing."), msg("user", "please use issue_reader on #1")),
			"Thought: I need to read it.\nAction: issue_reader\nAction Input: on #1", "stop"},
		{"tool named alone", reactRequest(t, msg("user", "Use gitlab_documentation")),
			"Thought: I need to read it.\nAction: gitlab_documentation\nAction Input: Use gitlab_documentation", "stop"},
		{"context before the question", reactRequest(t, msg("user", "<current_file path=\"a\">\ncode\n</current_file>\n\nuse issue_reader for #7\nthanks")),
			"Thought: I need to read it.\nAction: issue_reader\nAction Input: for #7", "stop"},
		{"observation in the transcript", reactRequest(t, msg("user", "please use issue_reader on #1"),
			msg("assistant", "Thought: t\nAction: issue_reader\nAction Input: #1\nObservation: Issue #1 is about the login page and more words here\n")),
			"Final Answer: Sandbox answer using the observation: Issue #1 is about the login page and", "stop"},
		{"unlisted tool: a short answer", reactRequest(t, msg("user", "how do I use git rebase?")), "Final Answer: Sandbox reply to: how do I use git rebase?", "stop"},
		{"no ReAct prompt", &genRequest{Messages: []message{msg("system", "be brief"), msg("user", "use issue_reader on #1")}}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.g.MaxTokens = &limit
			r := chatReply(tc.g)
			if tc.want == "" {
				if !strings.HasPrefix(r.text(), "Sandbox reply to:") {
					t.Fatalf("not the usual reply: %q", r.text())
				}
				return
			}
			if r.text() != tc.want || r.finish != tc.finish || r.promptTokens == 0 {
				t.Fatalf("%q finish %q prompt %d", r.text(), r.finish, r.promptTokens)
			}
			// The gateway's parser reads it as intended.
			st, err := modeloutput.ParseReAct(r.text())
			if err != nil {
				t.Fatal(err)
			}
			switch s := st.(type) {
			case modeloutput.Action:
				if !strings.Contains(tc.want, "Action: "+s.Tool+"\n") {
					t.Errorf("parsed %+v", s)
				}
			case modeloutput.FinalAnswer:
				if "Final Answer: "+s.Text != tc.want {
					t.Errorf("parsed %+v", s)
				}
			}
		})
	}
	// A short limit cuts the reply like max_tokens does.
	short := 3
	g := reactRequest(t, msg("user", "use issue_reader on #1"))
	g.MaxTokens = &short
	if r := chatReply(g); r.text() != "Thought: I need" || r.finish != "length" {
		t.Errorf("%q %q", r.text(), r.finish)
	}
}

func TestReActStream(t *testing.T) {
	h := start(t, Options{TokensPerSecond: 10000})
	sec := h.exchange()
	sys, _ := json.Marshal(reactSystem)
	body := `{"model":"sandbox-chat","messages":[{"role":"system","content":` + string(sys) +
		`},{"role":"user","content":"please use issue_reader on #1"}],"max_tokens":2048,"stream":true,"cache_salt":"` + salt + `"}`
	text, finish := streamText(t, h.do(pathChat, &sec, body))
	if text != "Thought: I need to read it.\nAction: issue_reader\nAction Input: on #1" || finish != "stop" {
		t.Fatalf("%q %q", text, finish)
	}
}
