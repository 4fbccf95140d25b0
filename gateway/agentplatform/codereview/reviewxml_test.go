package codereview

import (
	"fmt"
	"strings"
	"testing"
)

const cartDiff = "@@ -1,3 +1,4 @@\n export function total(items) {\n-  return items.reduce((s, i) => s + i.price, 0)\n+  // quantity defaults to 1\n+  return items.reduce((s, i) => s + i.price * (i.quantity ?? 1), 0)\n }\n@@ -10,2 +11,3 @@ export function empty() {\n   return []\n+}\n }\n"

func TestDiffLines(t *testing.T) {
	l := DiffLines(cartDiff)
	for n, want := range map[int]bool{1: true, 2: true, 3: true, 4: true, 5: false, 11: true, 12: true, 13: true, 14: false} {
		if l.New[n] != want {
			t.Errorf("new %d: %v", n, l.New[n])
		}
	}
	for n, want := range map[int]bool{1: true, 2: true, 3: true, 4: false, 10: true, 11: true, 12: false} {
		if l.Old[n] != want {
			t.Errorf("old %d: %v", n, l.Old[n])
		}
	}
	if l.Context[1] != 1 || l.Context[4] != 3 || l.Context[13] != 11 || l.Context[2] != 0 {
		t.Errorf("context %v", l.Context)
	}
	ann := Annotate(cartDiff)
	if !strings.Contains(ann, "        3 | +  return items.reduce") || !strings.Contains(ann, "   2      | -  return") || !strings.Contains(ann, "   3    4 |  }") {
		t.Fatalf("annotated:\n%s", ann)
	}
}

// TestWriteIsAlwaysAccepted: bodies that carry the parser's own markup,
// quotes in file names, missing lines and more than 50 comments never
// produce output GitLab would misread.
func TestWriteIsAlwaysAccepted(t *testing.T) {
	files := map[string]Lines{"src/cart.js": DiffLines(cartDiff)}
	var cs []Comment
	cs = append(cs,
		Comment{File: "src/cart.js", NewLine: 3, Body: "Use `??` carefully.\n</comment>\n<comment file=\"x\" new_line=\"1\">injected</comment>"},
		Comment{File: "src/cart.js", OldLine: 2, Body: "The old code ignored quantity </review> <review>"},
		Comment{File: "src/\"cart\".js", NewLine: 3, Body: "bad file"},
		Comment{File: "src/cart.js", Body: "no line"},
		Comment{File: "src/cart.js", NewLine: 4, Body: "   "},
	)
	for i := 0; i < 60; i++ {
		cs = append(cs, Comment{File: "src/cart.js", NewLine: 12, Body: fmt.Sprintf("note %d", i)})
	}
	out, dropped := Write(Review{Summary: "Looks fine <summary>nested</summary>", Comments: cs})
	if want := 3 + 12; dropped != want {
		t.Fatalf("dropped %d, want %d", dropped, want)
	}
	if err := Check(out, files); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := Parse(out)
	if len(p.Comments) != MaxComments || !strings.HasPrefix(p.Comments[0].Body, "Use `??` carefully.") || strings.Contains(p.Comments[0].Body, "</comment>") {
		t.Fatalf("%d comments, first %q", len(p.Comments), p.Comments[0].Body)
	}
	if !strings.HasPrefix(p.Summary, "Looks fine") || strings.Contains(p.Summary, "</summary>") {
		t.Fatalf("summary %q", p.Summary)
	}
}

// TestParseLikeGitLab: the checker reads the last review block, skips
// comments without file, line or body, and reads GitLab's own example.
func TestParseLikeGitLab(t *testing.T) {
	out := "thinking...\n<review>\n<comment file=\"a.go\" new_line=\"1\">old</comment>\n</review>\nfinal:\n<review>\n  <step>Thinking.</step>\n  <comment file=\"go/server.go\" old_line=\"\" new_line=\"12\">\n    Wrong route.\n  </comment>\n  <comment new_line=\"3\">no file</comment>\n  <comment file=\"b.go\" old_line=\"x\">no line</comment>\n</review>"
	p := Parse(out)
	if !p.Found || len(p.Comments) != 1 || p.Comments[0].File != "go/server.go" || p.Comments[0].NewLine != 12 || p.Invalid != 2 {
		t.Fatalf("%+v", p)
	}
	if Parse("no review here").Found {
		t.Fatal("found a review in plain text")
	}
}

// TestCorrect: comments off the diff are moved (within 3 lines) or
// dropped, with notes; a missing review block is an error.
func TestCorrect(t *testing.T) {
	files := map[string]Lines{"src/cart.js": DiffLines(cartDiff)}
	in := `<review><summary>ok</summary>
<comment file="src/cart.js" old_line="" new_line="3">on an added line</comment>
<comment file="src/cart.js" new_line="6">two past the last hunk line</comment>
<comment file="src/cart.js" new_line="40">far away</comment>
<comment file="src/other.js" new_line="1">not in the diff</comment>
<comment file="src/cart.js" old_line="2" new_line="">removed line</comment>
</review>`
	out, notes, err := Correct(in, files)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(out, files); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := Parse(out)
	got := []string{}
	for _, c := range p.Comments {
		got = append(got, fmt.Sprintf("%d/%d", c.OldLine, c.NewLine))
	}
	if strings.Join(got, " ") != "0/3 3/4 2/0" || len(notes) != 2 {
		t.Fatalf("comments %v notes %v", got, notes)
	}
	if _, _, err := Correct("LGTM", files); err == nil {
		t.Fatal("no review block accepted")
	}
}

func TestCheckRejects(t *testing.T) {
	files := map[string]Lines{"a.go": DiffLines("@@ -1,1 +1,2 @@\n x\n+y\n")}
	for name, out := range map[string]string{
		"no block":     "hello",
		"two blocks":   "<review>\n</review>\n<review>\n</review>",
		"invalid":      "<review>\n<comment file=\"a.go\">x</comment>\n</review>",
		"not in diff":  "<review>\n<comment file=\"a.go\" old_line=\"\" new_line=\"5\">\nx\n</comment>\n</review>",
		"unknown file": "<review>\n<comment file=\"b.go\" old_line=\"\" new_line=\"1\">\nx\n</comment>\n</review>",
		"context pair": "<review>\n<comment file=\"a.go\" old_line=\"\" new_line=\"1\">\nx\n</comment>\n</review>",
	} {
		if err := Check(out, files); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzWrite: whatever the review, Write's output passes Check against a
// diff holding every line, and GitLab reads back exactly the comments
// written.
func FuzzWrite(f *testing.F) {
	f.Add("src/a.go", 3, 0, "fix </comment> this", "summary")
	f.Add("x", 0, 2, "<review>", "")
	f.Fuzz(func(t *testing.T, file string, newLine, oldLine int, body, summary string) {
		if newLine > 1000 || oldLine > 1000 {
			return
		}
		l := Lines{New: map[int]bool{}, Old: map[int]bool{}, Context: map[int]int{}}
		for i := 1; i <= 1000; i++ {
			l.New[i], l.Old[i] = true, true
		}
		c := Comment{File: file, NewLine: newLine, OldLine: oldLine, Body: body}
		if newLine > 0 {
			c.OldLine = 0
		}
		out, dropped := Write(Review{Summary: summary, Comments: []Comment{c, c}})
		if err := Check(out, map[string]Lines{file: l}); err != nil {
			t.Fatalf("%v\n%q", err, out)
		}
		p := Parse(out)
		if len(p.Comments)+dropped != 2 {
			t.Fatalf("read %d, dropped %d", len(p.Comments), dropped)
		}
		for _, got := range p.Comments {
			if got.File != file || got.NewLine != max(newLine, 0) {
				t.Fatalf("read back %+v from %+v", got, c)
			}
		}
	})
}

// FuzzDiffLines: reading and annotating any diff never panics, line
// numbers are positive, and every context line is commentable on both
// sides.
func FuzzDiffLines(f *testing.F) {
	f.Add(cartDiff)
	f.Fuzz(func(t *testing.T, diff string) {
		l := DiffLines(diff)
		_ = Annotate(diff)
		for n, o := range l.Context {
			if !l.New[n] || !l.Old[o] {
				t.Fatalf("context %d→%d not on both sides", n, o)
			}
		}
		for n := range l.New {
			if n < 0 {
				t.Fatalf("negative line %d", n)
			}
		}
	})
}
