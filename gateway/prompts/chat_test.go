package prompts_test

import (
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

func TestMatchTool(t *testing.T) {
	tools := []prompts.Tool{{Name: "issue_reader"}, {Name: "gitlab_documentation"}, {Name: "merge_request_reader"}}
	for in, want := range map[string]string{
		"issue_reader": "issue_reader", "IssueReader": "issue_reader", "issue reader tool": "issue_reader",
		"GitLab-Documentation": "gitlab_documentation", "MergeRequestReader": "merge_request_reader", "pipeline_reader": "",
		"": "",
	} {
		got, ok := prompts.MatchTool(in, tools)
		if got != want || ok != (want != "") {
			t.Errorf("prompts.MatchTool(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestChatSystemPrompt(t *testing.T) {
	p := prompts.ChatSystemPrompt([]prompts.Tool{{Name: "issue_reader", Description: "Reads an issue.\n  Input: a reference."}}, []string{"Pipelines"}, "2026-01-02")
	for _, want := range []string{"issue_reader: Reads an issue. Input: a reference.", "Action Input:", "Final Answer:", "Pipelines", "2026-01-02"} {
		if !strings.Contains(p, want) {
			t.Errorf("system prompt lacks %q:\n%s", want, p)
		}
	}
	// The format the prompt teaches must parse.
	st, err := modeloutput.ParseReAct("Thought: x\nAction: issue_reader\nAction Input: #1")
	if a, ok := st.(modeloutput.Action); err != nil || !ok || a.Tool != "issue_reader" {
		t.Errorf("taught format does not parse: %#v %v", st, err)
	}
	sp := prompts.ScratchpadText([]prompts.ScratchpadStep{{Thought: "t", Tool: "issue_reader", ToolInput: "#1", Observation: "text"}})
	if !strings.Contains(sp, "Observation: text\n") {
		t.Errorf("scratchpad: %q", sp)
	}
}
