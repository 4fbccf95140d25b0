package sandbox

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestToolLoop: the Agent Platform's chat drives the sandbox through a
// tool loop — one named tool per turn in the order the user named them,
// numbers from the message as integer arguments, then an answer from the
// tool results.
func TestToolLoop(t *testing.T) {
	tools := []tool{}
	for _, n := range []string{"get_repository_file", "get_issue"} {
		var tl tool
		_ = json.Unmarshal([]byte(`{"type":"function","function":{"name":"`+n+`","parameters":{"type":"object","properties":{"issue_iid":{"type":"integer"},"file_path":{"type":"string"}}}}}`), &tl)
		tools = append(tools, tl)
	}
	user := msg("user", "Please call get_issue for issue #1, then call get_repository_file.")
	assistant := func(name string) message {
		m := message{Role: "assistant"}
		_ = json.Unmarshal([]byte(`{"role":"assistant","content":"","tool_calls":[{"id":"x","type":"function","function":{"name":"`+name+`","arguments":"{}"}}]}`), &m)
		return m
	}
	g := &genRequest{Model: ModelChat, Tools: tools, Messages: []message{user}}
	r := chatReply(g)
	if r.tool == nil || r.tool.Name != "get_issue" || !strings.Contains(r.tool.Args, `"issue_iid":1`) {
		t.Fatalf("turn 1: %+v", r.tool)
	}
	g.Messages = append(g.Messages, assistant("get_issue"), msg("tool", `{"title":"Cart total ignores quantity"}`))
	if r = chatReply(g); r.tool == nil || r.tool.Name != "get_repository_file" {
		t.Fatalf("turn 2: %+v", r.tool)
	}
	g.Messages = append(g.Messages, assistant("get_repository_file"), msg("tool", "export function total(items) {"))
	r = chatReply(g)
	if r.tool != nil || !strings.HasPrefix(r.text(), "Sandbox answer from the tool results: export function total") {
		t.Fatalf("turn 3: %q %+v", r.text(), r.tool)
	}
	// A new user message starts over.
	g.Messages = append(g.Messages, msg("assistant", r.text()), msg("user", "thanks"))
	if r = chatReply(g); r.tool != nil || !strings.HasPrefix(r.text(), "Sandbox reply to: thanks") {
		t.Fatalf("turn 4: %q", r.text())
	}
}

// TestToolLoopLongestName: "call create_work_item_note" picks that tool,
// not its prefix create_work_item.
func TestToolLoopLongestName(t *testing.T) {
	var tools []tool
	for _, n := range []string{"create_work_item", "create_work_item_note"} {
		var tl tool
		_ = json.Unmarshal([]byte(`{"type":"function","function":{"name":"`+n+`","parameters":{"type":"object"}}}`), &tl)
		tools = append(tools, tl)
	}
	g := &genRequest{Model: ModelChat, Tools: tools, Messages: []message{msg("user", "please call create_work_item_note")}}
	if r := chatReply(g); r.tool == nil || r.tool.Name != "create_work_item_note" {
		t.Fatalf("%+v", r.tool)
	}
	m := message{Role: "assistant"}
	_ = json.Unmarshal([]byte(`{"role":"assistant","tool_calls":[{"function":{"name":"create_work_item_note"}}]}`), &m)
	g.Messages = append(g.Messages, m, msg("tool", "ok"))
	if r := chatReply(g); r.tool != nil {
		t.Fatalf("called the prefix tool too: %+v", r.tool)
	}
}
