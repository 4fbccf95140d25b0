package prompts

import "strings"

// GenerationInput is the editor context of a code generation request
// (the code_editor_generation payload of /v3 and /v4).
type GenerationInput struct {
	FileName     string
	LanguageHint string // language_identifier
	Prefix       string // content_above_cursor (or prompt_enhancer.trimmed_content_above_cursor)
	Suffix       string // content_below_cursor
	// Instruction is prompt_enhancer.user_instruction; when empty the
	// instruction is taken from the comment just above the cursor.
	Instruction string
	// RelatedCode holds extra context (related files, snippets, libraries)
	// already rendered as text; it is trimmed with the prefix budget.
	RelatedCode []string
}

// Generation builds the chat messages of a code generation request.
func Generation(in GenerationInput) ChatPrompt {
	st := mustSettings(CodeGenerations)
	lang, _ := DetectLanguage(in.FileName, in.LanguageHint)
	budget := st.InputTokens
	pre := KeepTail(in.Prefix, budget*3/4)
	suf := KeepHead(in.Suffix, budget/4)
	instr := strings.TrimSpace(in.Instruction)
	if instr == "" {
		instr = InstructionFromComment(pre, lang)
	}
	name := lang.Name
	if name == "" {
		name = "the file's language"
	}

	var sys strings.Builder
	sys.WriteString("You are an expert software engineer writing code directly into a file in the user's editor.\n")
	sys.WriteString("You get the file with the marker " + CursorMark + " where your code will be inserted, and an instruction.\n")
	sys.WriteString("Rules:\n")
	sys.WriteString("- Reply with only the " + name + " code to insert at the cursor, no explanations before or after it.\n")
	sys.WriteString("- Do not repeat the code before or after the cursor.\n")
	sys.WriteString("- Follow the style, indentation and imports of the surrounding code.\n")
	sys.WriteString("- Explanations, if essential, go in code comments.")

	var u strings.Builder
	if len(in.RelatedCode) > 0 {
		left := budget / 2
		u.WriteString("Related code from the project:\n")
		for _, c := range in.RelatedCode {
			if left <= 0 {
				break
			}
			c = KeepHead(c, left)
			left -= EstimateTokens(c)
			u.WriteString("<related>\n" + c + "\n</related>\n")
		}
		u.WriteString("\n")
	}
	if in.FileName != "" {
		u.WriteString("File: " + in.FileName + "\n")
	}
	if lang.Name != "" {
		u.WriteString("Language: " + lang.Name + "\n")
	}
	u.WriteString("\n<file>\n" + pre + CursorMark + suf + "\n</file>\n\n")
	if instr != "" {
		u.WriteString("Instruction: " + instr + "\n")
	} else {
		u.WriteString("Instruction: write the code that belongs at the cursor.\n")
	}
	return ChatPrompt{Feature: CodeGenerations, Messages: []Message{system(sys.String()), user(u.String())}, Settings: st}
}

// InstructionFromComment returns the text of the comment block directly
// above the cursor (the last lines of prefix that are line comments), the
// way users ask for generations in the editor: "# write a function that …".
// It returns "" when the lines above the cursor are not comments.
func InstructionFromComment(prefix string, lang Language) string {
	lines := strings.Split(prefix, "\n")
	// The cursor line itself may be empty or indentation.
	if n := len(lines); n > 0 && strings.TrimSpace(lines[n-1]) == "" {
		lines = lines[:n-1]
	}
	markers := []string{"//", "#", "--", ";", "%", "'"}
	if lang.Comment != "" {
		markers = []string{lang.Comment}
	}
	var got []string
	for i := len(lines) - 1; i >= 0 && len(got) < 20; i-- {
		t := strings.TrimSpace(lines[i])
		text, ok := stripComment(t, markers)
		if !ok {
			break
		}
		got = append(got, text)
	}
	for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
		got[i], got[j] = got[j], got[i]
	}
	return strings.TrimSpace(strings.Join(got, "\n"))
}

func stripComment(t string, markers []string) (string, bool) {
	for _, m := range markers {
		if strings.HasPrefix(t, m) {
			return strings.TrimSpace(strings.TrimLeft(t, m[:1])), true
		}
	}
	if strings.HasPrefix(t, "/*") || strings.HasPrefix(t, "*") {
		t = strings.TrimPrefix(strings.TrimPrefix(t, "/*"), "*")
		t = strings.TrimSuffix(strings.TrimSpace(t), "*/")
		return strings.TrimSpace(t), true
	}
	return "", false
}
