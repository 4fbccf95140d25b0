package modeloutput

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// AnswerStream finds the final answer in a Duo Chat reply while the model
// is still writing it, so GitLab can show the answer as it is generated
// instead of after the whole ReAct step.
//
// Write takes each delta and returns only answer text that no later delta
// can take back: nothing while the reply may still turn out to be an
// action ("Thought: …" without a "Final Answer:" yet, a JSON step, a fenced
// block), nothing inside a reasoning block, and never a partial marker line,
// trailing whitespace or half a UTF-8 sequence. A reply is streamed when it
// reaches "Final Answer:" (marker-first replies, as ChatSystemPrompt asks
// for), or as soon as its first line is plainly prose (cannot become a
// marker, a JSON object or a fence). Streamed answers end at the
// first later line that starts with Thought:, Action:, Action Input: or
// Observation:; a repeated "Final Answer:" marker is dropped.
//
// The decisions depend only on the text, never on how it was split into
// deltas: every split of a reply yields the same answer text as one delta
// (FuzzAnswerStream checks this). When nothing was streamed, Close returns
// "" and the caller decides with ParseReAct(Text()).
//
// A reply that starts with prose and only later names an Action is
// answered as text (GitLab ignores an action that follows answer text
// anyway). Reasoning that lacks its opening <think> tag (the chat template
// opened it) cannot be told from prose until </think> arrives, so it would
// show: serve such models with a reasoning parser that keeps reasoning out
// of the content.
type AnswerStream struct {
	raw     strings.Builder
	emitted string // the answer text handed out so far
}

// Write adds a delta of the model's reply and returns the answer text that
// became safe to show, often "".
func (a *AnswerStream) Write(delta string) string {
	a.raw.WriteString(delta)
	// The whole reply is looked at again each time: a closing reasoning
	// tag can still turn a held reply into an answer. Chat replies are a
	// few thousand tokens, so this stays cheap.
	return a.extend(answerView(a.raw.String(), false).text)
}

// Close ends the reply. When answer text was streamed it returns the rest
// of the answer; otherwise it returns "" and the reply is for ParseReAct.
func (a *AnswerStream) Close() string {
	if a.emitted == "" {
		return ""
	}
	return a.extend(answerView(a.raw.String(), true).text)
}

// Streamed reports whether any answer text was returned.
func (a *AnswerStream) Streamed() bool { return a.emitted != "" }

// Text returns the raw reply so far.
func (a *AnswerStream) Text() string { return a.raw.String() }

// extend returns what text adds to the answer handed out so far. The views
// only ever grow; a view that does not extend the emitted text is ignored
// rather than shown, since shown text cannot be taken back.
func (a *AnswerStream) extend(text string) string {
	if len(text) <= len(a.emitted) || !strings.HasPrefix(text, a.emitted) {
		return ""
	}
	add := text[len(a.emitted):]
	a.emitted = text
	return add
}

type viewState int

const (
	viewUndecided viewState = iota // nothing can be shown yet
	viewAnswer                     // text is the answer so far
	viewHeld                       // an action or a JSON/fenced step: never streamed
)

type view struct {
	state viewState
	text  string
}

var (
	openTags  = []string{"<think>", "<thinking>", "<reasoning>"}
	closeTags = []string{"</think>", "</thinking>", "</reasoning>"}
	// markerLineRe is markerRe for one line (same markers, same leading
	// bullets and headings, so the same decisions as ParseReAct).
	markerLineRe = regexp.MustCompile(`(?i)^[ \t>*#\-]*(thought|action[ \t_-]*input|action|final[ \t_-]*answer|observation)[ \t]*\**[ \t]*:[ \t]*\**[ \t]*`)
	// strictLineRe finds the markers that end or continue a streamed
	// answer: only at the very start of a line (bold allowed), so list
	// items and headings in an answer ("- Action: click Save") are text.
	strictLineRe  = regexp.MustCompile(`(?i)^\**[ \t]*(thought|action[ \t_-]*input|action|final[ \t_-]*answer|observation)[ \t]*\**[ \t]*:[ \t]*\**[ \t]*`)
	reasoningTags = []string{"<think>", "<thinking>", "<reasoning>", "</think>", "</thinking>", "</reasoning>"}
)

// answerView is the answer visible in reply s. With final false, s may
// still grow, and whatever could change with more text is held back.
func answerView(s string, final bool) view {
	return reactView(cleanReply(s, final), final)
}

// cleanReply removes reasoning from s: closed blocks, everything from an
// unclosed opening tag, and a closing tag without its opening (the model's
// template opened the block): the text before it is reasoning unless it was
// already streamed as answer, in which case the tag becomes a line break.
func cleanReply(s string, final bool) string {
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		if !final {
			s = strings.TrimSuffix(s, "\r")
		}
	}
	if !final {
		s = trimPartialRune(s)
		s = s[:len(s)-partialTagLen(s)]
	}
	if strings.IndexByte(s, '<') < 0 {
		return s
	}
	s = removeBlocks(s)
	if i, _ := findTag(s, openTags); i >= 0 {
		s = s[:i]
	}
	for {
		i, n := findTag(s, closeTags)
		if i < 0 {
			return s
		}
		if v := reactView(s[:i], false); v.state == viewAnswer && v.text != "" {
			rest := s[i:]
			for {
				j, m := findTag(rest, closeTags)
				if j < 0 {
					return s[:i] + rest
				}
				// A line break keeps a marker after the tag a marker.
				rest = rest[:j] + "\n" + rest[j+m:]
			}
		}
		s = s[i+n:]
	}
}

// findTag returns the position and length of the first of tags in s, or
// -1. strings.Index, not regexps: replies full of "<" (HTML, generics) are
// scanned at every delta.
func findTag(s string, tags []string) (int, int) {
	best, n := -1, 0
	for _, t := range tags {
		if i := strings.Index(s, t); i >= 0 && (best < 0 || i < best) {
			best, n = i, len(t)
		}
	}
	return best, n
}

// removeBlocks removes closed reasoning blocks exactly as
// reasoningRe.ReplaceAllString does: from the first opening tag to the
// first closing tag of any kind after it, then on from there.
func removeBlocks(s string) string {
	var b strings.Builder
	prev := 0
	for {
		o, ol := findTag(s[prev:], openTags)
		if o < 0 {
			break
		}
		o += prev
		c, cl := findTag(s[o+ol:], closeTags)
		if c < 0 {
			break
		}
		b.WriteString(s[prev:o])
		prev = o + ol + c + cl
	}
	if prev == 0 {
		return s
	}
	b.WriteString(s[prev:])
	return b.String()
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of s.
func trimPartialRune(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			return s
		}
	}
	return s
}

// partialTagLen is the length of a reasoning tag still being written at
// the end of s ("<thi"), or 0.
func partialTagLen(s string) int {
	i := strings.LastIndexByte(s, '<')
	if i < 0 {
		return 0
	}
	tail := s[i:]
	for _, tag := range reasoningTags {
		if len(tail) < len(tag) && strings.HasPrefix(tag, tail) {
			return len(tail)
		}
	}
	return 0
}

// reactView decides, on reasoning-free text c, whether the reply is an
// answer and how much of it is visible. Marker-first replies follow
// ParseReAct: the first Action before the first Final Answer makes it an
// action. Otherwise a first line that cannot become a marker makes it an
// answer, unless it opens a JSON object or a fence (a JSON step).
func reactView(c string, final bool) view {
	start := len(c) - len(strings.TrimLeftFunc(c, unicode.IsSpace))
	if start == len(c) {
		return view{}
	}
	lineStart := strings.LastIndexByte(c[:start], '\n') + 1
	markerFirst, v := false, view{}
	eachMarker(c, markerLineRe, " \t>*#-", func(start, end int, kw string) bool {
		if !markerFirst && start != lineStart {
			return false // the reply does not start with a marker
		}
		markerFirst = true
		switch {
		case strings.HasPrefix(kw, "final"):
			v = answerFrom(c[end:], final)
			return false
		case strings.HasPrefix(kw, "action") && !strings.HasSuffix(kw, "input"):
			v = view{state: viewHeld}
			return false
		}
		return true
	})
	if markerFirst {
		return v
	}
	line, _, complete := strings.Cut(c[start:], "\n")
	if !complete && !final && (couldBeMarker(c[lineStart:], " \t>*#-") || strings.HasPrefix("```", line)) {
		return view{} // may still become a marker line or a fence
	}
	if strings.HasPrefix(line, "{") || strings.HasPrefix(line, "```") {
		return view{state: viewHeld}
	}
	return answerFrom(c[start:], final)
}

// answerFrom returns the answer in body, which starts where the answer
// starts (not at a line start for "Final Answer: …"): it ends at a later
// Thought/Action/Action Input/Observation line, repeated "Final Answer:"
// markers are dropped, and with final false a last line that may still
// become a marker is held back.
func answerFrom(body string, final bool) view {
	var b strings.Builder
	pos, stopped := 0, false
	eachMarker(body, strictLineRe, "* \t", func(start, end int, kw string) bool {
		if start == 0 {
			return true // not a line start: the answer's own first line
		}
		b.WriteString(body[pos:start])
		pos = end
		stopped = !strings.HasPrefix(kw, "final")
		return !stopped
	})
	if !stopped {
		tail := body[pos:]
		if nl := strings.LastIndexByte(tail, '\n'); !final && nl >= 0 && couldBeMarker(tail[nl+1:], "* \t") {
			tail = tail[:nl+1]
		}
		b.WriteString(tail)
	}
	return view{state: viewAnswer, text: strings.TrimSpace(b.String())}
}

// eachMarker calls fn with the span and lower-cased keyword of each marker
// line of s, in order, until fn returns false. re is anchored at a line
// start; lead lists what may precede the keyword. re runs only on lines
// whose first letter can start a keyword, so a delta costs a scan of the
// line starts, not a regexp run at every byte.
func eachMarker(s string, re *regexp.Regexp, lead string, fn func(start, end int, kw string) bool) {
	for pos := 0; ; {
		line, _, more := strings.Cut(s[pos:], "\n")
		if r := strings.TrimLeft(line, lead); r != "" && strings.IndexByte("tafoTAFO", r[0]) >= 0 {
			if loc := re.FindStringSubmatchIndex(line); loc != nil &&
				!fn(pos+loc[0], pos+loc[1], strings.ToLower(line[loc[2]:loc[3]])) {
				return
			}
		}
		if !more {
			return
		}
		pos += len(line) + 1
	}
}

// couldBeMarker reports whether line, a line still being written, may yet
// become a ReAct marker line ("Action:", "**Final Answer:**") when more
// text arrives. lead lists what may come before the keyword. It errs
// towards true: a wrong true only delays text.
func couldBeMarker(line, lead string) bool {
	r := strings.ToLower(strings.TrimLeft(line, lead))
	for _, kw := range []string{"thought", "action", "final", "observation"} {
		if strings.HasPrefix(kw, r) {
			return true
		}
		rest, ok := strings.CutPrefix(r, kw)
		if !ok {
			continue
		}
		if kw == "action" || kw == "final" {
			word := "input"
			if kw == "final" {
				word = "answer"
			}
			sep := strings.TrimLeft(rest, " \t_-")
			if sep == "" || strings.HasPrefix(word, sep) {
				return true
			}
			if after, ok := strings.CutPrefix(sep, word); ok {
				rest = after
			} else if kw == "final" {
				return false
			}
		}
		rest = strings.TrimLeft(rest, " \t*")
		return rest == "" || rest[0] == ':'
	}
	return false
}
