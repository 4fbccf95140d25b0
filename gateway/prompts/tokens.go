package prompts

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// EstimateTokens estimates the token count of s as bytes/4, rounded up.
func EstimateTokens(s string) int { return (len(s) + 3) / 4 }

// KeepTail returns the end of s that fits in tokens (bytes/4), starting at
// a line boundary: the part of the text just above the cursor. A single
// line longer than the budget is cut inside the line at a UTF-8 boundary.
// tokens <= 0 keeps nothing.
func KeepTail(s string, tokens int) string {
	if tokens <= 0 {
		return ""
	}
	max := tokens * 4
	if len(s) <= max {
		return s
	}
	cut := len(s) - max
	if s[cut-1] == '\n' {
		return s[cut:]
	}
	if i := strings.IndexByte(s[cut:], '\n'); i >= 0 && cut+i+1 < len(s) {
		return s[cut+i+1:]
	}
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return s[cut:]
}

// KeepHead returns the start of s that fits in tokens (bytes/4), ending at
// a line boundary (the newline is kept): the part of the text just below
// the cursor. A single line longer than the budget is cut at a UTF-8
// boundary. tokens <= 0 keeps nothing.
func KeepHead(s string, tokens int) string {
	if tokens <= 0 {
		return ""
	}
	max := tokens * 4
	if len(s) <= max {
		return s
	}
	if i := strings.LastIndexByte(s[:max], '\n'); i > 0 {
		return s[:i+1]
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// truncateMiddle keeps the head and tail of a long input (a diff, a job
// log) within tokens and marks the gap.
func truncateMiddle(s string, tokens int) string {
	if EstimateTokens(s) <= tokens {
		return s
	}
	head := KeepHead(s, tokens/3)
	tail := KeepTail(s, tokens-tokens/3)
	return head + "\n[… " + strconv.Itoa(len(s)-len(head)-len(tail)) + " bytes omitted …]\n" + tail
}

// truncateHead keeps the start of s within tokens.
func truncateHead(s string, tokens int) string {
	if EstimateTokens(s) <= tokens {
		return s
	}
	return KeepHead(s, tokens) + "\n[… truncated …]"
}
