package codereview

import (
	"fmt"
	"strings"
	"testing"
)

// reviewOf50 is a model's review with 50 comments on a 400-line diff.
func reviewOf50() (string, map[string]Lines) {
	var d strings.Builder
	d.WriteString("@@ -1,0 +1,400 @@\n")
	for i := range 400 {
		fmt.Fprintf(&d, "+line %d\n", i)
	}
	files := map[string]Lines{"big.go": DiffLines(d.String())}
	var r strings.Builder
	r.WriteString("<review>\n<summary>s</summary>\n")
	for i := range 50 {
		fmt.Fprintf(&r, "<comment file=\"big.go\" old_line=\"\" new_line=\"%d\">\nComment %d explains the problem in a sentence or two.\n</comment>\n", 1+i*8, i)
	}
	r.WriteString("</review>")
	return r.String(), files
}

// BenchmarkCorrect parses, checks lines and rewrites a 50-comment review;
// the baseline BenchmarkParseOnly only reads it as GitLab would.
func BenchmarkCorrect(b *testing.B) {
	out, files := reviewOf50()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Correct(out, files); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseOnly is BenchmarkCorrect's baseline.
func BenchmarkParseOnly(b *testing.B) {
	out, _ := reviewOf50()
	b.ReportAllocs()
	for b.Loop() {
		if p := Parse(out); len(p.Comments) != 50 {
			b.Fatal(len(p.Comments))
		}
	}
}
