package modeloutput

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// CleanContext is the editor state a completion or generation was made
// for.
type CleanContext struct {
	// Prefix and Suffix are the code above and below the cursor that the
	// model saw (CompletionPrompt.Prefix/SuffixKept, or the raw editor
	// contents).
	Prefix, Suffix string
	// FileName decides Markdown handling: in a Markdown file a fence that
	// does not wrap the whole output is content, not wrapping.
	FileName string
	// Generation enables the generation rule that code written after a
	// comment line at the cursor starts on a new line.
	Generation bool
}

// Clean turns raw model output into the text to insert at the cursor:
// reasoning blocks (<think>…</think>) and leaked special tokens are removed,
// Markdown fences are stripped (taking the first fenced block when the
// model wrapped code in prose), lines repeating the code above the cursor
// (including the current partial line) or below it are dropped, trailing
// whitespace is trimmed on every line and at the end, and indentation the
// editor already has is not doubled. Output that is only whitespace becomes
// "".
func Clean(out string, c CleanContext) string {
	s := strings.ReplaceAll(out, "\r\n", "\n")
	s = stripReasoning(s)
	s = stripSpecialTokens(s)
	lang, _ := prompts.DetectLanguage(c.FileName, "")
	s = stripFences(s, lang.Fence == "markdown")
	s = stripInlineCode(s)
	s = trimLinesRight(s)
	if strings.TrimSpace(s) == "" {
		return ""
	}
	prefix := strings.ReplaceAll(c.Prefix, "\r\n", "\n")
	suffix := strings.ReplaceAll(c.Suffix, "\r\n", "\n")
	s = removePrefixEcho(s, prefix)
	s = removeSuffixEcho(s, suffix)
	s = strings.TrimRight(s, " \t\n")
	if strings.TrimSpace(s) == "" {
		return ""
	}
	partial := prefix[strings.LastIndexByte(prefix, '\n')+1:]
	if strings.TrimSpace(partial) == "" {
		// The cursor is at the start of a line (maybe indented): leading
		// newlines would leave blank lines, and leading indentation equal to
		// what the editor already has would be doubled.
		s = strings.TrimLeft(s, "\n")
		if partial != "" && strings.HasPrefix(s, partial) {
			s = s[len(partial):]
		}
	} else if c.Generation && !strings.HasPrefix(s, "\n") && isCommentLine(partial) {
		s = "\n" + s
	}
	return s
}

var (
	reasoningRe = regexp.MustCompile(`(?s)<(think|thinking|reasoning)>.*?</(think|thinking|reasoning)>`)
	specialRe   = regexp.MustCompile(`<\|(?:endoftext|im_end|file_sep|fim_pad|eot_id|end)\|>|<\|file_separator\|>|<EOT>|<｜end▁of▁sentence｜>|</s>`)
	markRe      = regexp.MustCompile(`<\|fim_(?:prefix|suffix|middle)\|>|<fim_(?:prefix|suffix|middle)>|` + regexp.QuoteMeta(prompts.CursorMark))
)

// StripReasoning removes reasoning blocks (<think>…</think> and the like)
// from an answer shown as prose (commit messages, summaries, reviews); an
// answer without any is returned unchanged, one that is only reasoning
// becomes "".
func StripReasoning(s string) string {
	for _, tag := range []string{"</think>", "</thinking>", "</reasoning>", "<think>", "<thinking>", "<reasoning>"} {
		if strings.Contains(s, tag) {
			return strings.TrimSpace(stripReasoning(s))
		}
	}
	return s
}

// stripReasoning removes closed reasoning blocks; an unclosed one at the
// start means the model never got to the answer.
func stripReasoning(s string) string {
	s = reasoningRe.ReplaceAllString(s, "")
	t := strings.TrimSpace(s)
	for _, tag := range []string{"<think>", "<thinking>", "<reasoning>"} {
		if strings.HasPrefix(t, tag) {
			return ""
		}
	}
	// Some servers drop the opening tag but keep the closing one.
	for _, tag := range []string{"</think>", "</thinking>", "</reasoning>"} {
		if i := strings.Index(s, tag); i >= 0 {
			s = s[i+len(tag):]
		}
	}
	return s
}

// stripSpecialTokens cuts at an end-of-text token and removes FIM and
// cursor markers the model echoed.
func stripSpecialTokens(s string) string {
	if loc := specialRe.FindStringIndex(s); loc != nil {
		s = s[:loc[0]]
	}
	s = markRe.ReplaceAllString(s, "")
	lines := strings.Split(s, "\n")
	// Our chat prompts wrap the file in <file> tags; models sometimes copy them.
	if first := firstNonBlank(lines); first >= 0 && strings.TrimSpace(lines[first]) == "<file>" {
		lines = append(lines[:first], lines[first+1:]...)
	}
	if last := lastNonBlank(lines); last >= 0 && strings.TrimSpace(lines[last]) == "</file>" {
		lines = append(lines[:last], lines[last+1:]...)
	}
	return strings.Join(lines, "\n")
}

func isFence(line string) bool {
	t := strings.TrimSpace(line)
	return strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~")
}

// isBareFence reports a closing fence: only fence characters.
func isBareFence(line string) bool {
	t := strings.TrimSpace(line)
	return len(t) >= 3 && (strings.Trim(t, "`") == "" || strings.Trim(t, "~") == "")
}

// stripFences returns the first fenced block's body when the output
// contains one (prose around it is dropped), or the output without a stray
// trailing closing fence. In Markdown files only a fence that opens the
// output counts.
func stripFences(s string, markdown bool) string {
	lines := strings.Split(s, "\n")
	open := -1
	for i, l := range lines {
		if isFence(l) {
			open = i
			break
		}
	}
	if open < 0 {
		return s
	}
	if markdown && open != firstNonBlank(lines) {
		return s
	}
	if open == lastNonBlank(lines) && open > 0 && isBareFence(lines[open]) {
		// Only a closing fence at the end: the model started inside a block.
		return strings.Join(lines[:open], "\n")
	}
	end := len(lines)
	for j := open + 1; j < len(lines); j++ {
		if isBareFence(lines[j]) {
			end = j
			break
		}
	}
	return strings.Join(lines[open+1:end], "\n")
}

// stripInlineCode unwraps a one-line answer in single backticks.
func stripInlineCode(s string) string {
	t := strings.TrimSpace(s)
	if len(t) >= 3 && !strings.Contains(t, "\n") && t[0] == '`' && t[len(t)-1] == '`' && strings.Count(t, "`") == 2 {
		return t[1 : len(t)-1]
	}
	return s
}

func trimLinesRight(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRightFunc(l, unicode.IsSpace)
	}
	return strings.Join(lines, "\n")
}

func firstNonBlank(lines []string) int {
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			return i
		}
	}
	return -1
}

func lastNonBlank(lines []string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			return i
		}
	}
	return -1
}

func nonSpace(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// minEcho is the number of non-space characters a repeated block must
// have before it is treated as an echo; a lone "}" may be new code.
const minEcho = 4

// maxEchoLines bounds the echo search.
const maxEchoLines = 400

// removePrefixEcho drops the start of out when it repeats the last lines
// above the cursor, and the current partial line when the model restates it.
func removePrefixEcho(out, prefix string) string {
	return removePrefixEchoN(out, prefix, maxEchoLines)
}

// removePrefixEchoN is removePrefixEcho looking at most maxLines lines back.
func removePrefixEchoN(out, prefix string, maxLines int) string {
	o := strings.Split(out, "\n")
	nl := strings.LastIndexByte(prefix, '\n')
	partial := strings.TrimSpace(prefix[nl+1:])
	var full []string
	if nl >= 0 {
		full = strings.Split(prefix[:nl], "\n")
	}
	maxK := min(len(full), len(o), maxLines)
	for k := maxK; k >= 0; k-- {
		sig := 0
		ok := true
		for i := 0; i < k; i++ {
			a, b := strings.TrimSpace(o[i]), strings.TrimSpace(full[len(full)-k+i])
			if a != b {
				ok = false
				break
			}
			sig += nonSpace(a)
		}
		if !ok {
			continue
		}
		if partial != "" {
			if k >= len(o) {
				continue
			}
			line := strings.TrimLeftFunc(o[k], unicode.IsSpace)
			if !strings.HasPrefix(line, partial) {
				continue
			}
			if k == 0 && utf8.RuneCountInString(partial) < 3 {
				continue
			}
			if sig+nonSpace(partial) < 3 {
				continue
			}
			r := line[len(partial):]
			if strings.HasSuffix(prefix, " ") || strings.HasSuffix(prefix, "\t") {
				r = strings.TrimLeft(r, " \t")
			}
			rest := append([]string{r}, o[k+1:]...)
			return strings.Join(rest, "\n")
		}
		if k > 0 && sig >= minEcho {
			return strings.Join(o[k:], "\n")
		}
	}
	return out
}

// removeSuffixEcho drops the end of out when it repeats the first lines
// below the cursor (and the rest of the cursor line).
func removeSuffixEcho(out, suffix string) string {
	o := strings.Split(strings.TrimRight(out, " \t\n"), "\n")
	sl := strings.Split(suffix, "\n")
	rest0 := strings.TrimSpace(sl[0])
	rest := sl[1:]
	if rest0 == "" {
		for len(rest) > 0 && strings.TrimSpace(rest[0]) == "" {
			rest = rest[1:]
		}
	}
	maxK := min(len(rest), len(o), maxEchoLines)
	for k := maxK; k >= 0; k-- {
		sig := 0
		ok := true
		for i := 0; i < k; i++ {
			a, b := strings.TrimSpace(o[len(o)-k+i]), strings.TrimSpace(rest[i])
			if a != b {
				ok = false
				break
			}
			sig += nonSpace(a)
		}
		if !ok {
			continue
		}
		if rest0 != "" {
			// The line before the repeated lines must end with the rest of
			// the cursor line.
			if k >= len(o) {
				continue
			}
			idx := len(o) - k - 1
			line := strings.TrimRightFunc(o[idx], unicode.IsSpace)
			if !strings.HasSuffix(line, rest0) || sig+nonSpace(rest0) < minEcho {
				continue
			}
			kept := append(o[:idx:idx], line[:len(line)-len(rest0)])
			return strings.Join(kept, "\n")
		}
		if k > 0 && sig >= minEcho {
			return strings.Join(o[:len(o)-k], "\n")
		}
	}
	return out
}

var commentStarts = []string{"//", "#", "--", "/*", "*", ";", "<!--", "%"}

func isCommentLine(line string) bool {
	t := strings.TrimSpace(line)
	for _, m := range commentStarts {
		if strings.HasPrefix(t, m) {
			return true
		}
	}
	return false
}
