package executortools_test

import (
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools"
)

// FuzzSplitArgs: splitting never panics, and text without quotes or
// backslashes splits exactly at whitespace.
func FuzzSplitArgs(f *testing.F) {
	f.Add(`-m 'two words' "a \"b\"" c\ d`)
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := executortools.SplitArgs(s)
		if strings.ContainsAny(s, `'"\`) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		want := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
		if strings.Join(parts, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%q → %q, want %q", s, parts, want)
		}
	})
}
