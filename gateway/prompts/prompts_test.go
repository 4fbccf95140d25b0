package prompts

import (
	"errors"
	"strings"
	"testing"
)

func TestKeepTailHead(t *testing.T) {
	s := "line1\nline2\nline3\nline4\n"
	if got := KeepTail(s, 3); got != "line3\nline4\n" { // 12 bytes
		t.Errorf("KeepTail = %q", got)
	}
	if got := KeepHead(s, 3); got != "line1\nline2\n" {
		t.Errorf("KeepHead = %q", got)
	}
	if got := KeepTail("abcdefghij", 1); got != "ghij" {
		t.Errorf("KeepTail long line = %q", got)
	}
	if KeepTail(s, 0) != "" || KeepHead(s, -1) != "" || KeepTail(s, 100) != s {
		t.Error("edge budgets")
	}
}

func TestCompletion(t *testing.T) {
	pre := strings.Repeat("x := 1\n", 2000) + "func f() {\n\t"
	suf := "\n}\n" + strings.Repeat("y := 2\n", 2000)
	tests := []struct {
		format FIMFormat
		check  func(t *testing.T, p CompletionPrompt)
	}{
		{"", func(t *testing.T, p CompletionPrompt) {
			if p.Format != FIMChat || len(p.Messages) != 2 || !strings.Contains(p.Messages[1].Content, "func f() {\n\t<CURSOR>\n}") {
				t.Errorf("chat prompt: %+v", p.Messages)
			}
			if !strings.Contains(p.Messages[1].Content, "Language: Go") || p.Settings.MaxTokens != 128 {
				t.Errorf("language/max tokens: %+v", p.Settings)
			}
		}},
		{FIMQwen, func(t *testing.T, p CompletionPrompt) {
			if !strings.HasPrefix(p.Prompt, "<|fim_prefix|>x := 1\n") || !strings.HasSuffix(p.Prompt, "<|fim_middle|>") || p.Settings.MaxTokens != 64 || len(p.Settings.Stop) == 0 {
				t.Errorf("qwen prompt: %q %+v", p.Prompt[:40], p.Settings)
			}
		}},
		{FIMCodestral, func(t *testing.T, p CompletionPrompt) {
			if !strings.HasPrefix(p.Prompt, "[SUFFIX]\n}\n") || !strings.HasSuffix(p.Prompt, "[PREFIX]"+p.Prefix) {
				t.Errorf("codestral prompt")
			}
		}},
		{FIMSuffixField, func(t *testing.T, p CompletionPrompt) {
			if p.Prompt != p.Prefix || p.Suffix != p.SuffixKept || len(p.Messages) != 0 {
				t.Errorf("suffix-field prompt")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			p := Completion(CompletionInput{FileName: "main.go", Prefix: pre, Suffix: suf, Format: tt.format}, Budget{Prefix: 100, Suffix: 50})
			if EstimateTokens(p.Prefix) > 100 || EstimateTokens(p.SuffixKept) > 50 {
				t.Fatalf("budget exceeded: %d %d", EstimateTokens(p.Prefix), EstimateTokens(p.SuffixKept))
			}
			if !strings.HasSuffix(p.Prefix, "func f() {\n\t") || !strings.HasPrefix(p.SuffixKept, "\n}\n") || !strings.HasPrefix(p.Prefix, "x := 1\n") {
				t.Fatalf("not cut at line boundaries near the cursor: %q … %q", p.Prefix[:10], p.SuffixKept)
			}
			tt.check(t, p)
		})
	}
}

func TestDetectLanguage(t *testing.T) {
	for in, want := range map[string]string{"a/b/main.go": "Go", "x.PY": "Python", "Dockerfile": "Dockerfile", "Dockerfile.dev": "Dockerfile",
		"Gemfile": "Ruby", "app.tsx": "TypeScript", "C:\\src\\x.rs": "Rust", "unknown.zzz": ""} {
		if got, _ := DetectLanguage(in, ""); got.Name != want {
			t.Errorf("DetectLanguage(%q) = %q, want %q", in, got.Name, want)
		}
	}
	if got, ok := DetectLanguage("x.txt", "python"); !ok || got.Name != "Python" {
		t.Errorf("hint ignored: %v", got)
	}
}

func TestGeneration(t *testing.T) {
	p := Generation(GenerationInput{FileName: "util.py", Prefix: "import os\n\n# return the size of a file\n# in bytes\n", Suffix: "\n"})
	u := p.Messages[1].Content
	if !strings.Contains(u, "Instruction: return the size of a file\nin bytes") || !strings.Contains(u, "<CURSOR>") || !strings.Contains(p.Messages[0].Content, "Python code") {
		t.Errorf("generation prompt:\n%s", u)
	}
	if p.Settings.MaxTokens != 2048 || p.Feature != CodeGenerations {
		t.Errorf("settings %+v", p.Settings)
	}
	p = Generation(GenerationInput{FileName: "a.go", Prefix: "x := 1\n", Instruction: "add a test", RelatedCode: []string{"func helper() {}"}})
	if !strings.Contains(p.Messages[1].Content, "Instruction: add a test") || !strings.Contains(p.Messages[1].Content, "func helper()") {
		t.Errorf("explicit instruction/related code missing")
	}
}

func TestLookupAndSettings(t *testing.T) {
	for in, want := range map[string]Feature{
		"model_configuration%2Fcheck": ModelConfigurationCheck, "/chat/explain_code": ChatExplainCode, "chat/react": DuoChat,
		"code_suggestions/completions": CodeCompletions, "generate_commit_message": GenerateCommitMessage, "summarize_comments": ChatSummarizeComments,
	} {
		if got, err := LookupFeature(in); err != nil || got != want {
			t.Errorf("LookupFeature(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := LookupFeature("nope/x"); !errors.Is(err, ErrUnknownPrompt) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := SettingsFor("nope"); !errors.Is(err, ErrUnknownPrompt) {
		t.Errorf("unknown settings: %v", err)
	}
	for _, f := range Features() {
		s, _ := SettingsFor(f)
		if s.MaxTokens <= 0 || s.InputTokens <= 0 || len(s.Stop) > 4 || s.Temperature < 0 || s.Temperature > 1 {
			t.Errorf("%s: bad settings %+v", f, s)
		}
	}
	s, _ := SettingsFor(CodeCompletions)
	if s.MaxTokens < 64 || s.MaxTokens > 128 {
		t.Errorf("completion max tokens %d", s.MaxTokens)
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		id     string
		inputs map[string]any
		want   []string
	}{
		{"generate_commit_message", map[string]any{"diff": "+added line"}, []string{"<diff>\n+added line\n</diff>"}},
		{"summarize_new_merge_request", map[string]any{"source_branch": "feat", "target_branch": "main", "extracted_diff": "+x"}, []string{"feat → main", "+x"}},
		{"review_merge_request", map[string]any{"mr_title": "Fix", "diff_lines": "-a\n+b", "extra": 5}, []string{"<title>\nFix", "-a\n+b", "Additional context:\n<extra>\n5"}},
		{"resolve_vulnerability", map[string]any{"title": "SQLi", "code": "q = \"SELECT\" + x"}, []string{"SQLi", "SELECT"}},
		{"chat/explain_vulnerability", map[string]any{"title": "XSS"}, []string{"XSS"}},
		{"chat/write_tests", map[string]any{"file_name": "a.go", "selected_text": "func A() {}"}, []string{"```go\nfunc A() {}\n```"}},
		{"chat/troubleshoot_job", map[string]any{"job_log": "ERROR: exit 1"}, []string{"ERROR: exit 1"}},
		{"summarize_review", map[string]any{"draft_notes_content": "nit: rename"}, []string{"nit: rename"}},
		{"generate_description", map[string]any{"content": "draft"}, []string{"draft"}},
		{"chat/summarize_comments", map[string]any{"notes_content": "we agreed"}, []string{"we agreed"}},
		{"model_configuration%2Fcheck", nil, []string{"hello"}},
		{"categorize_question", map[string]any{"question": "how?"}, []string{"how?"}},
		{"glab_ask_git_command", map[string]any{"prompt": "undo commit"}, []string{"undo commit"}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			p, err := Render(tt.id, tt.inputs)
			if err != nil {
				t.Fatal(err)
			}
			all := p.Messages[0].Content + "\n" + p.Messages[len(p.Messages)-1].Content
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in\n%s", w, all)
				}
			}
			if p.Settings.MaxTokens == 0 {
				t.Error("no settings")
			}
		})
	}
	for _, id := range []string{"unknown", "chat/react", "code_suggestions/completions"} {
		if _, err := Render(id, nil); !errors.Is(err, ErrUnknownPrompt) {
			t.Errorf("Render(%q) err = %v", id, err)
		}
	}
	big := strings.Repeat("+line\n", 100000)
	p, _ := Render("generate_commit_message", map[string]any{"diff": big})
	if EstimateTokens(p.Messages[1].Content) > 13000 {
		t.Errorf("diff not trimmed: %d tokens", EstimateTokens(p.Messages[1].Content))
	}
}
