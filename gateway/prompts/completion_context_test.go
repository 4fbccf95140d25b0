package prompts

import (
	"strings"
	"testing"
)

func TestCompletionRelated(t *testing.T) {
	in := CompletionInput{FileName: "a.go", Prefix: "x := ", Related: []string{"func first() {}", "", strings.Repeat("y := 2\n", 5000), "func never() {}"}}
	p := Completion(in, Budget{Context: 100})
	u := p.Messages[1].Content
	if !strings.HasPrefix(u, "Related code from the project:\n<related>\nfunc first() {}\n</related>\n<related>\ny := 2\n") {
		t.Fatalf("related blocks not first, in order:\n%.200s", u)
	}
	if strings.Contains(u, "never") || strings.Count(u, "<related>") != 2 {
		t.Errorf("related code beyond the budget was kept")
	}
	if n := strings.Count(u, "y := 2\n"); n == 0 || n*7 > 100*4 {
		t.Errorf("%d lines of the long block kept for a 100-token budget", n)
	}
	if !strings.Contains(u, "<file>\nx := <CURSOR>\n</file>") {
		t.Errorf("file missing:\n%s", u)
	}
	// Raw FIM prompts have no place for it.
	in.Format = FIMQwen
	if p := Completion(in, Budget{}); strings.Contains(p.Prompt, "first") {
		t.Errorf("related code in a raw FIM prompt: %q", p.Prompt)
	}
	// Blank related code adds no section.
	in.Format, in.Related = FIMChat, []string{" \n"}
	if u := Completion(in, Budget{}).Messages[1].Content; strings.Contains(u, "Related") {
		t.Errorf("empty related section: %q", u)
	}
}
