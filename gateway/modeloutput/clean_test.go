package modeloutput

import (
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	goPrefix := "package main\n\nfunc add(a, b int) int {\n\t"
	goSuffix := "\n}\n\nfunc main() {\n\tfmt.Println(add(1, 2))\n}\n"
	tests := []struct {
		name, out, prefix, suffix, file string
		gen                             bool
		want                            string
	}{
		{name: "plain", out: "return a + b", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "fence with language", out: "```go\nreturn a + b\n```", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "fence without language", out: "```\nreturn a + b\n```\n", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "prose around fence", out: "Here is the completion:\n\n```go\nreturn a + b\n```\n\nThis returns the sum.", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "unclosed fence", out: "```python\ndef f():\n    return 1", prefix: "", suffix: "", want: "def f():\n    return 1"},
		{name: "stray closing fence", out: "return a + b\n```", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "echo of prefix lines", out: "func add(a, b int) int {\n\treturn a + b", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "echo of whole prefix", out: "package main\n\nfunc add(a, b int) int {\n\treturn a + b\n}", prefix: goPrefix, suffix: "\n", want: "return a + b\n}"},
		{name: "echo of partial line", out: "    return a + b", prefix: "def add(a, b):\n    return ", suffix: "\n", want: "a + b"},
		{name: "echo of partial identifier", out: "result = compute(x)\nprint(result)", prefix: "x = 1\nresult = comp", suffix: "", want: "ute(x)\nprint(result)"},
		{name: "short partial not stripped", out: "in range(10):", prefix: "for i", suffix: "", want: "in range(10):"},
		{name: "echo of suffix lines", out: "return a + b\n}\n\nfunc main() {\n\tfmt.Println(add(1, 2))\n}", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "echo of rest of cursor line and suffix", out: "\"hello\")\n    return 0", prefix: "def f():\n    print(", suffix: ")\n    return 0\n", want: "\"hello\""},
		{name: "short suffix rest not stripped", out: "foo()", prefix: "print(", suffix: ")\n", want: "foo()"},
		{name: "lone brace kept", out: "\treturn a + b\n}", prefix: "func add(a, b int) int {\n", suffix: "}\n", want: "\treturn a + b\n}"},
		{name: "trailing whitespace", out: "return a + b   \n\n  \n", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "crlf and per-line trailing spaces", out: "if x {  \r\n\treturn 1 \r\n}\r\n", prefix: "func f(x bool) int {\n", suffix: "", want: "if x {\n\treturn 1\n}"},
		{name: "only whitespace", out: "  \n\t\n", prefix: goPrefix, suffix: goSuffix, want: ""},
		{name: "only fences", out: "```go\n```", prefix: goPrefix, suffix: goSuffix, want: ""},
		{name: "think block", out: "<think>\nThe user wants a sum.\n</think>\n\nreturn a + b", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "unclosed think", out: "<think>\nLet me consider", prefix: goPrefix, suffix: goSuffix, want: ""},
		{name: "special tokens", out: "return a + b<|endoftext|>garbage", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "cursor marker and file tags", out: "<file>\nreturn a + b<CURSOR>\n</file>", prefix: goPrefix, suffix: goSuffix, want: "return a + b"},
		{name: "indentation not doubled", out: "    return x * 2", prefix: "def double(x):\n    ", suffix: "", want: "return x * 2"},
		{name: "leading newline kept after code", out: "\n    return 1", prefix: "def f():", suffix: "", want: "\n    return 1"},
		{name: "inline code", out: "`a + b`", prefix: "return ", suffix: "", want: "a + b"},
		{name: "generation after comment", out: "```python\ndef is_even(n):\n    return n % 2 == 0\n```", prefix: "# function that checks if n is even", suffix: "", gen: true,
			want: "\ndef is_even(n):\n    return n % 2 == 0"},
		{name: "markdown file keeps inner fence", out: "Example:\n\n```sh\nmake\n```", prefix: "# Build\n\n", suffix: "", file: "README.md", want: "Example:\n\n```sh\nmake\n```"},
		{name: "fence nested prose after", out: "Sure! Here's the implementation:\n```javascript\nconst sum = (a, b) => a + b;\n```\nLet me know if you need more.", prefix: "// sum\n", suffix: "", want: "const sum = (a, b) => a + b;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Clean(tt.out, CleanContext{Prefix: tt.prefix, Suffix: tt.suffix, FileName: tt.file, Generation: tt.gen})
			if got != tt.want {
				t.Errorf("Clean(%q)\n got %q\nwant %q", tt.out, got, tt.want)
			}
		})
	}
}

func FuzzClean(f *testing.F) {
	f.Add("```go\nreturn a\n```", "func f() {\n\t", "\n}")
	f.Add("<think>x</think>y", "a\nb", "c\nd")
	f.Add("x)\ny", "print(", ")\ny")
	f.Fuzz(func(t *testing.T, out, prefix, suffix string) {
		got := Clean(out, CleanContext{Prefix: prefix, Suffix: suffix, Generation: len(prefix)%2 == 0})
		if got != "" && strings.TrimSpace(got) == "" {
			t.Fatalf("whitespace-only result %q", got)
		}
		if strings.TrimRight(got, " \t\n") != got {
			t.Fatalf("trailing whitespace in %q", got)
		}
	})
}

func TestStripReasoning(t *testing.T) {
	tests := []struct{ in, want string }{
		{"fix: handle nil config", "fix: handle nil config"},
		{"  keep my spacing\n", "  keep my spacing\n"},
		{"<think>the diff renames a field</think>\n\nrefactor: rename Foo to Bar", "refactor: rename Foo to Bar"},
		{"the server dropped the opening tag</think>\nSummary: ok", "Summary: ok"},
		{"<think>never finished", ""},
		{"<reasoning>a</reasoning>A<thinking>b</thinking>B", "AB"},
	}
	for _, tc := range tests {
		if got := StripReasoning(tc.in); got != tc.want {
			t.Errorf("StripReasoning(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
