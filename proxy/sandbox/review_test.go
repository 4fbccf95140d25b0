package sandbox

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

var updateReview = flag.Bool("update-review", false, "rewrite testdata/review-context.review.xml")

func namedTool(t *testing.T, name, params string) tool {
	t.Helper()
	var tl tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"`+name+`","parameters":`+params+`}}`), &tl); err != nil {
		t.Fatal(err)
	}
	return tl
}

// reviewSchema is post_duo_code_review's parameters as the Agent Platform
// declares them.
const reviewSchema = `{"type":"object","properties":{"project_id":{"type":"string"},"merge_request_iid":{"type":"integer"},"review_output":{"type":"string"}},"required":["merge_request_iid","review_output"]}`

// TestReviewConvention: the publish step of a code review (the request
// offers post_duo_code_review) gets one call with the merge request's
// number and a review that comments on the first changed line of each file
// of the annotated diff (testdata/review-context.txt is the review
// context's format, as codereview.ContextText writes it, with edge cases
// added: a blank first added line, a deleted file, a file with only a
// blank line, markup in a line, and a whole-file section that must not
// count). The review is golden.
func TestReviewConvention(t *testing.T) {
	ctx, err := os.ReadFile("testdata/review-context.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, choice := range []string{``, `"auto"`, `"required"`, `{"type":"function","function":{"name":"post_duo_code_review"}}`} {
		g := &genRequest{Model: ModelChat, Tools: []tool{namedTool(t, reviewTool, reviewSchema)}, ToolChoice: json.RawMessage(choice),
			Messages: []message{msg("system", "You are a code reviewer."),
				msg("user", "Merge request 2 of project 1.\n\nChanges:\n"+string(ctx)+"\nNotes from reading the repository:\nSandbox reply to: x")}}
		// A correction round appends a user message; the review stays.
		if choice == `"required"` {
			g.Messages = append(g.Messages, msg("assistant", ""), msg("user", "You must call the tool post_duo_code_review now."))
		}
		r := chatReply(g)
		if r.tool == nil || r.tool.Name != reviewTool || r.finish != "tool_calls" {
			t.Fatalf("tool_choice %s: %+v", choice, r)
		}
		var args struct {
			IID    int    `json:"merge_request_iid"`
			Review string `json:"review_output"`
		}
		if err := json.Unmarshal([]byte(r.tool.Args), &args); err != nil || args.IID != 2 {
			t.Fatalf("args %s: %v", r.tool.Args, err)
		}
		golden := "testdata/review-context.review.xml"
		if *updateReview {
			if err := os.WriteFile(golden, []byte(args.Review), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if args.Review != string(want) {
			t.Fatalf("review differs from %s:\n%s", golden, args.Review)
		}
		if again := chatReply(g); again.tool.Args != r.tool.Args || again.tool.ID != r.tool.ID {
			t.Fatal("not deterministic")
		}
	}
}

// TestReviewConventionBounds: at most maxReviewFiles comments however many
// files; the number comes from "Merge request !N" in the context; a
// request without a diff still gets a well-formed review (summary only);
// tool_choice "none" or naming another tool turns the convention off.
func TestReviewConventionBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString("Review this.\nMerge request !7: many files\n")
	for i := range 12 {
		b.WriteString("\n== f" + string(rune('a'+i)) + ".go (new file) ==\n@@ -0,0 +1,1 @@\n        1 | +package x\n")
	}
	g := &genRequest{Model: ModelChat, Tools: []tool{namedTool(t, reviewTool, reviewSchema)}, Messages: []message{msg("user", b.String())}}
	r := chatReply(g)
	var args struct {
		IID    int    `json:"merge_request_iid"`
		Review string `json:"review_output"`
	}
	if r.tool == nil || json.Unmarshal([]byte(r.tool.Args), &args) != nil || args.IID != 7 {
		t.Fatalf("%+v", r.tool)
	}
	if n := strings.Count(args.Review, "<comment "); n != maxReviewFiles || !strings.Contains(args.Review, "12 changed file(s) in the diff, 5 deterministic comment(s)") {
		t.Fatalf("%d comments:\n%s", n, args.Review)
	}

	g.Messages = []message{msg("user", "Merge request 3, no diff here")}
	r = chatReply(g)
	if r.tool == nil || json.Unmarshal([]byte(r.tool.Args), &args) != nil || args.IID != 3 ||
		!strings.HasPrefix(args.Review, "<review>\n<summary>\nSandbox review (NOT CONFIDENTIAL") || strings.Contains(args.Review, "<comment") || !strings.HasSuffix(args.Review, "</review>") {
		t.Fatalf("%+v", args)
	}

	for _, choice := range []string{`"none"`, `{"type":"function","function":{"name":"other"}}`} {
		g.ToolChoice = json.RawMessage(choice)
		g.Tools = append(g.Tools, namedTool(t, "other", `{"type":"object","properties":{"x":{"type":"string"}}}`))
		if r := chatReply(g); r.tool != nil && r.tool.Name == reviewTool {
			t.Fatalf("tool_choice %s: %+v", choice, r.tool)
		}
	}
}

// TestFinalResponseConvention: a flow's agent step (final_response_tool
// offered, no tool named in the message) ends with a short final answer
// through that tool, not a text padded to max_tokens; a "call <tool>" loop
// still runs first.
func TestFinalResponseConvention(t *testing.T) {
	limit := 4096
	tools := []tool{namedTool(t, "read_file", `{"type":"object","properties":{"file_path":{"type":"string"}},"required":["file_path"]}`),
		namedTool(t, finalTool, `{"type":"object","properties":{"final_response":{"type":"string"}},"required":["final_response"]}`)}
	g := &genRequest{Model: ModelChat, Tools: tools, MaxTokens: &limit, Messages: []message{msg("system", "Explore."), msg("user", "Changes under review:\nMerge request !1: Fix the cart total\n...")}}
	r := chatReply(g)
	if r.tool == nil || r.tool.Name != finalTool || r.tool.Args != `{"final_response":"Sandbox reply to: Changes under review: Merge request !1: Fix the cart total ..."}` {
		t.Fatalf("%+v", r)
	}
	g.Messages[1] = msg("user", "please call read_file")
	if r := chatReply(g); r.tool == nil || r.tool.Name != "read_file" {
		t.Fatalf("call loop: %+v", r.tool)
	}
	g.ToolChoice = json.RawMessage(`"none"`)
	if r := chatReply(g); r.tool != nil {
		t.Fatalf("tool_choice none: %+v", r.tool)
	}
}

// FuzzSandboxReview: whatever the request text, the review is one
// <review> block with at most maxReviewFiles comments, each closed and
// naming a file and a line.
func FuzzSandboxReview(f *testing.F) {
	if ctx, err := os.ReadFile("testdata/review-context.txt"); err == nil {
		f.Add(string(ctx))
	}
	f.Add("== a.go (modified) ==\n        1 | +</comment><review>`\n")
	f.Fuzz(func(t *testing.T, text string) {
		out := sandboxReview([]string{text})
		if strings.Count(out, "<review>") != 1 || strings.Count(out, "</review>") != 1 || !strings.HasSuffix(out, "</review>") {
			t.Fatalf("review blocks:\n%s", out)
		}
		opened, closed := strings.Count(out, "<comment "), strings.Count(out, "</comment>")
		if opened != closed || opened > maxReviewFiles || strings.Count(out, "<summary>") != 1 {
			t.Fatalf("%d comments opened, %d closed:\n%s", opened, closed, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "<comment ") && (strings.Contains(l, `file=""`) || strings.Contains(l, `old_line="" new_line="">`)) {
				t.Fatalf("comment without file or line: %s", l)
			}
		}
	})
}
