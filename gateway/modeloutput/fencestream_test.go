package modeloutput

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// streamText runs out through a StreamCleaner in deltas cut by split
// (byte lengths, rounded to rune boundaries; the last delta takes the
// rest) and returns the whole output.
func streamText(out string, c CleanContext, split func(i int) int) string {
	sc := NewStreamCleaner(c)
	var b strings.Builder
	for i := 0; out != ""; i++ {
		n := min(max(split(i), 1), len(out))
		for n < len(out) && !utf8.RuneStart(out[n]) {
			n++
		}
		b.WriteString(sc.Write(out[:n]))
		out = out[n:]
	}
	b.WriteString(sc.Close())
	return b.String()
}

func whole(int) int { return 1 << 30 }

func TestStreamCleaner(t *testing.T) {
	goPrefix := "package main\n\nfunc add(a, b int) int {\n\t"
	tests := []struct {
		name, out, prefix, file string
		gen                     bool
		want                    string
	}{
		{name: "plain", out: "return a + b", prefix: goPrefix, want: "return a + b"},
		{name: "fence with language", out: "```go\nreturn a + b\n```", prefix: goPrefix, want: "return a + b\n"},
		{name: "fence without language", out: "```\nreturn a + b\n```\n", prefix: goPrefix, want: "return a + b\n"},
		{name: "tilde fence", out: "~~~go\nreturn a + b\n~~~\n", prefix: goPrefix, want: "return a + b\n"},
		{name: "blank lines before the fence", out: "\n\n```go\nreturn a + b\n```", prefix: goPrefix, want: "return a + b\n"},
		{name: "prose after the block", out: "```go\nreturn a + b\n```\n\nThis returns the sum.", prefix: goPrefix, want: "return a + b\n"},
		{name: "language fence inside block is content", out: "```md\nrun:\n```sh\n", prefix: "", want: "run:\n```sh\n"},
		{name: "unclosed fence", out: "```python\ndef f():\n    return 1", prefix: "", want: "def f():\n    return 1"},
		{name: "stray closing fence", out: "return a + b\n```", prefix: goPrefix, want: "return a + b\n"},
		{name: "prose then block: the block is kept, the prose was sent", out: "Here:\n```js\nx()\n```\nmore", prefix: "", want: "Here:\nx()\n"},
		{name: "backticks that are not a fence", out: "`x` + ``y``\n``", prefix: "", want: "`x` + ``y``\n``"},
		{name: "indented fence", out: "  ```go\n\treturn 1\n  ```", prefix: goPrefix, want: "return 1\n"},
		{name: "echo of prefix lines", out: "func add(a, b int) int {\n\treturn a + b", prefix: goPrefix, want: "return a + b"},
		{name: "echo of whole prefix", out: "package main\n\nfunc add(a, b int) int {\n\treturn a + b\n}", prefix: goPrefix, want: "return a + b\n}"},
		{name: "echo inside a fence", out: "```go\nfunc add(a, b int) int {\n\treturn a + b\n}\n```", prefix: goPrefix, want: "return a + b\n}\n"},
		{name: "echo of partial line", out: "    return a + b", prefix: "def add(a, b):\n    return ", want: "a + b"},
		{name: "echo of partial identifier", out: "result = compute(x)\nprint(result)", prefix: "x = 1\nresult = comp", want: "ute(x)\nprint(result)"},
		{name: "short partial not stripped", out: "in range(10):", prefix: "for i", want: "in range(10):"},
		{name: "lone brace kept", out: "\treturn a + b\n}", prefix: "func add(a, b int) int {\n", want: "\treturn a + b\n}"},
		{name: "no echo: same first line elsewhere", out: "x := 1\ny := 2", prefix: "x := 1\nz := 3\n", want: "x := 1\ny := 2"},
		{name: "only whitespace", out: "  \n\t\n", prefix: goPrefix, want: ""},
		{name: "only fences", out: "```go\n```", prefix: goPrefix, want: ""},
		{name: "think block", out: "<think>\nThe user wants a sum.\n</think>\n\nreturn a + b", prefix: goPrefix, want: "return a + b"},
		{name: "unclosed think", out: "<think>\nLet me consider", prefix: goPrefix, want: ""},
		{name: "think-like text is content", out: "<thin>x", prefix: "", want: "<thin>x"},
		{name: "indentation not doubled", out: "    return x * 2", prefix: "def double(x):\n    ", want: "return x * 2"},
		{name: "blank indented lines before code dropped", out: "  \n\n    return 1", prefix: "def f():\n    ", want: "return 1"},
		{name: "leading newline kept after code", out: "\n    return 1", prefix: "def f():", want: "\n    return 1"},
		{name: "generation after comment", out: "```python\ndef is_even(n):\n    return n % 2 == 0\n```", prefix: "# function that checks if n is even", gen: true,
			want: "\ndef is_even(n):\n    return n % 2 == 0\n"},
		{name: "markdown file keeps inner fence", out: "Example:\n\n```sh\nmake\n```", prefix: "# Build\n\n", file: "README.md", want: "Example:\n\n```sh\nmake\n```"},
		{name: "markdown file: wrapping fence stripped", out: "```markdown\n## Usage\n```", prefix: "# Build\n\n", file: "README.md", want: "## Usage\n"},
		{name: "crlf", out: "```go\r\nreturn 1\r\n```\r\n", prefix: goPrefix, want: "return 1\r\n"},
	}
	splits := map[string]func(int) int{
		"whole":  whole,
		"bytes":  func(int) int { return 1 },
		"threes": func(int) int { return 3 },
		"mixed":  func(i int) int { return 1 + i*7%5 },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CleanContext{Prefix: tt.prefix, FileName: tt.file, Generation: tt.gen}
			for name, split := range splits {
				if got := streamText(tt.out, c, split); got != tt.want {
					t.Errorf("%s deltas: got %q, want %q", name, got, tt.want)
				}
			}
		})
	}
}

// TestStreamCleanerHoldsLittle checks that text is sent as soon as it is
// known not to be a fence or an echo: never the whole answer.
func TestStreamCleanerHoldsLittle(t *testing.T) {
	sc := NewStreamCleaner(CleanContext{Prefix: "func f() {\n\t", Generation: true})
	steps := []struct{ in, want string }{
		{"re", "re"}, // not a fence, not an echo: sent at once
		{"turn 1\n", "turn 1\n"},
		{"}", "}"},
		{"\n``", "\n"}, // "``" may become a fence: held
		{"`\n", ""},    // a stray closing fence: dropped
	}
	for i, s := range steps {
		if got := sc.Write(s.in); got != s.want {
			t.Fatalf("step %d: Write(%q) = %q, want %q", i, s.in, got, s.want)
		}
	}
	if got := sc.Close(); got != "" {
		t.Fatalf("Close = %q", got)
	}

	// A long plain answer streams line by line.
	sc = NewStreamCleaner(CleanContext{Prefix: "x = 0\n"})
	for i := range 200 {
		line := "v" + strings.Repeat("x", i%7) + " = " + string(rune('a'+i%26)) + "\n"
		if got := sc.Write(line); got != line {
			t.Fatalf("line %d held back: got %q", i, got)
		}
	}
}

func TestStreamCleanerEcho(t *testing.T) {
	sc := NewStreamCleaner(CleanContext{Prefix: "a := 1\nb := 2\n"})
	for _, s := range []string{"a := 1\n", "b := 2\n"} {
		if got := sc.Write(s); got != "" {
			t.Fatalf("echoed line %q sent: %q", s, got)
		}
	}
	if got := sc.Write("c := 3\n"); got != "c := 3\n" {
		t.Fatalf("after the echo: %q", got)
	}
	// An echo that diverges is sent whole.
	sc = NewStreamCleaner(CleanContext{Prefix: "a := 1\nb := 2\n"})
	if got := sc.Write("a := 1\n"); got != "" {
		t.Fatalf("possible echo sent: %q", got)
	}
	if got := sc.Write("z"); got != "a := 1\nz" {
		t.Fatalf("diverged echo: %q", got)
	}
	// A model repeating the file forever is not held forever.
	var prefix strings.Builder
	for i := range 100 {
		prefix.WriteString("line" + strings.Repeat("!", i) + "\n")
	}
	sc = NewStreamCleaner(CleanContext{Prefix: prefix.String()})
	var got strings.Builder
	for _, l := range strings.SplitAfter(prefix.String(), "\n") {
		got.WriteString(sc.Write(l))
	}
	if got.Len() == 0 {
		t.Fatal("a 100-line echo was held back entirely")
	}
}

func TestStreamCleanerDone(t *testing.T) {
	sc := NewStreamCleaner(CleanContext{})
	sc.Write("```go\nx := 1\n")
	if sc.Done() {
		t.Fatal("done inside the block")
	}
	sc.Write("```\nExplanation")
	if !sc.Done() {
		t.Fatal("not done after the closing fence")
	}
	if got := sc.Write("more prose"); got != "" {
		t.Fatalf("text after the block: %q", got)
	}
}

func FuzzStreamCleaner(f *testing.F) {
	f.Add("```go\nreturn a\n```\nprose", "func f() {\n\t", uint8(3), false)
	f.Add("<think>x</think>\n\ny", "a\nb", uint8(1), true)
	f.Add("a\nb\n\tc", "a\nb\n\t", uint8(2), false)
	f.Add("    return 1", "def f():\n    return ", uint8(5), true)
	f.Add("x\n```\n``", "# do it", uint8(4), true)
	f.Fuzz(func(t *testing.T, out, prefix string, step uint8, gen bool) {
		if !utf8.ValidString(out) {
			t.Skip("model deltas are valid UTF-8")
		}
		c := CleanContext{Prefix: prefix, Generation: gen}
		want := streamText(out, c, whole)
		for _, split := range []func(int) int{
			func(int) int { return 1 },
			func(i int) int { return 1 + (i*int(step)+int(step))%11 },
		} {
			if got := streamText(out, c, split); got != want {
				t.Fatalf("depends on delta boundaries:\n got %q\nwant %q", got, want)
			}
		}
		if strings.TrimSpace(want) == "" && want != "" {
			t.Fatalf("whitespace-only output %q", want)
		}
	})
}
