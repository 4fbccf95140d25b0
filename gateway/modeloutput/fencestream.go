package modeloutput

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// StreamCleaner cleans a streamed completion or generation as it arrives,
// the streaming counterpart of [Clean]. It strips, in order:
//
//   - a reasoning block that opens the output (<think>…</think>); an
//     unclosed one yields nothing;
//   - Markdown fences, line by line: a fence opening the output starts a
//     block whose bare closing fence ends the answer (trailing prose is
//     dropped); a fence after plain lines is dropped and starts such a
//     block too (the lines before it have already been sent). In Markdown
//     files only a fence that opens the output is wrapping;
//   - at the start, lines repeating the last lines above the cursor and a
//     restatement of the cursor line, leading blank lines and indentation
//     the editor already has (as Clean does).
//
// It holds back only what it cannot decide yet: the start of a line that
// may be a fence (until its end), leading whitespace, and, while the output
// repeats the code above the cursor line for line, at most streamEchoLines
// such lines. Everything else is returned by the Write that received it.
// Unlike Clean it does not remove echoes of the code below the cursor or
// trailing whitespace, which would need the end of the answer.
//
// The result does not depend on how the text is split into deltas.
type StreamCleaner struct {
	think thinkFilter
	fence fenceFilter
	head  headFilter
}

// streamEchoLines bounds how many repeated prefix lines a stream holds
// back before giving up on echo removal.
const streamEchoLines = 12

// NewStreamCleaner returns a cleaner for output written for c.
func NewStreamCleaner(c CleanContext) *StreamCleaner {
	lang, _ := prompts.DetectLanguage(c.FileName, "")
	prefix := strings.ReplaceAll(c.Prefix, "\r\n", "\n")
	nl := strings.LastIndexByte(prefix, '\n')
	h := headFilter{prefix: prefix, partial: prefix[nl+1:], gen: c.Generation}
	h.p = strings.TrimSpace(h.partial)
	h.spaceEnd = strings.HasSuffix(prefix, " ") || strings.HasSuffix(prefix, "\t")
	if nl >= 0 {
		lines := strings.Split(prefix[:nl], "\n")
		lines = lines[max(0, len(lines)-streamEchoLines):]
		for i, l := range lines {
			lines[i] = strings.TrimSpace(l)
		}
		h.full = lines
	}
	return &StreamCleaner{fence: fenceFilter{markdown: lang.Fence == "markdown"}, head: h}
}

// Write takes the next model delta and returns the text to send now
// (possibly "").
func (s *StreamCleaner) Write(delta string) string {
	t := s.think.write(delta, false)
	t = s.fence.write(t, false)
	return s.head.write(t, false)
}

// Close ends the stream and returns what was held back.
func (s *StreamCleaner) Close() string {
	t := s.think.write("", true)
	t = s.fence.write(t, true)
	return s.head.write(t, true)
}

// Done reports that the answer is complete (its fenced block closed): the
// rest of the model's output would be dropped, so the caller may stop it.
func (s *StreamCleaner) Done() bool { return s.fence.state == fenceDone }

// thinkFilter drops a reasoning block at the start of the output.
type thinkFilter struct {
	state int // thinkStart, thinkIn, thinkPass
	buf   string
	lead  int // bytes of leading whitespace in buf
}

const (
	thinkStart = iota
	thinkIn
	thinkPass
)

var (
	thinkOpen  = []string{"<think>", "<thinking>", "<reasoning>"}
	thinkClose = []string{"</think>", "</thinking>", "</reasoning>"}
)

func (f *thinkFilter) write(s string, final bool) string {
	switch f.state {
	case thinkPass:
		return s
	case thinkIn:
		return f.inside(s)
	}
	f.buf += s
	// Leading whitespace is scanned once, however many deltas it spans.
	f.lead += len(f.buf[f.lead:]) - len(strings.TrimLeftFunc(f.buf[f.lead:], unicode.IsSpace))
	t := f.buf[f.lead:]
	for _, tag := range thinkOpen {
		if strings.HasPrefix(t, tag) {
			f.state, f.buf, f.lead = thinkIn, "", 0
			return f.inside(t[len(tag):])
		}
	}
	if !final {
		for _, tag := range thinkOpen {
			if len(t) < len(tag) && strings.HasPrefix(tag, t) {
				return "" // may still become a tag
			}
		}
	}
	f.state = thinkPass
	out := f.buf
	f.buf, f.lead = "", 0
	return out
}

// inside scans for the end of the reasoning block, keeping only enough of
// the text to find a closing tag split across deltas.
func (f *thinkFilter) inside(s string) string {
	f.buf += s
	at, n := -1, 0
	for _, tag := range thinkClose {
		if i := strings.Index(f.buf, tag); i >= 0 && (at < 0 || i < at) {
			at, n = i, len(tag)
		}
	}
	if at >= 0 {
		rest := f.buf[at+n:]
		f.state, f.buf = thinkPass, ""
		return rest
	}
	if keep := len("</reasoning>") - 1; len(f.buf) > keep {
		f.buf = f.buf[len(f.buf)-keep:]
	}
	return ""
}

// fenceFilter strips Markdown fences line by line.
type fenceFilter struct {
	markdown bool
	state    int    // fenceStart, fencePlain, fenceBlock, fenceDone
	mode     int    // lineOpen, linePass, lineFence
	line     string // the current line while undecided or a fence
	lead     int    // bytes of leading whitespace in line
	blanks   string // blank lines before the first content (fenceStart)
}

const (
	fenceStart = iota // nothing but blank lines yet
	fencePlain        // unfenced output
	fenceBlock        // inside the fenced block
	fenceDone         // the block closed: drop the rest
)

const (
	lineOpen  = iota // start of a line, not classified yet
	linePass         // a text line: pass the rest through
	lineFence        // a fence line: hold it to its end
)

func (f *fenceFilter) write(s string, final bool) string {
	var out strings.Builder
	for s != "" && f.state != fenceDone {
		piece, complete := s, false
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			piece, complete = s[:i+1], true
		}
		s = s[len(piece):]
		f.feed(&out, piece, complete)
	}
	if final && f.state != fenceDone {
		if f.line != "" {
			f.feed(&out, "", true)
		}
		out.WriteString(f.blanks)
		f.blanks = ""
	}
	return out.String()
}

// feed handles one piece of a line; complete means it ends the line.
func (f *fenceFilter) feed(out *strings.Builder, piece string, complete bool) {
	if f.mode == linePass {
		out.WriteString(piece)
		if complete {
			f.mode = lineOpen
		}
		return
	}
	f.line += piece
	if f.mode == lineOpen {
		f.lead += len(f.line[f.lead:]) - len(strings.TrimLeftFunc(f.line[f.lead:], unicode.IsSpace))
		t := f.line[f.lead:]
		switch {
		case t == "":
			if !complete {
				return
			}
			if f.state == fenceStart {
				f.blanks += f.line
			} else {
				out.WriteString(f.line)
			}
			f.line, f.lead = "", 0
			return
		case strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~"):
			f.mode = lineFence
		case !complete && len(t) < 3 && (strings.Trim(t, "`") == "" || strings.Trim(t, "~") == ""):
			return // "`" or "``": may still become a fence
		default:
			if f.state == fenceStart {
				f.state = fencePlain
				out.WriteString(f.blanks)
				f.blanks = ""
			}
			out.WriteString(f.line)
			f.line, f.lead, f.mode = "", 0, linePass
			if complete {
				f.mode = lineOpen
			}
			return
		}
	}
	if !complete {
		return
	}
	line := f.line
	f.line, f.lead, f.mode = "", 0, lineOpen
	switch f.state {
	case fenceStart:
		f.state, f.blanks = fenceBlock, ""
	case fencePlain:
		if f.markdown {
			out.WriteString(line)
		} else {
			f.state = fenceBlock
		}
	case fenceBlock:
		if isBareFence(line) {
			f.state = fenceDone
		} else {
			out.WriteString(line)
		}
	}
}

// headFilter holds the start of the output until it is known whether it
// repeats the code above the cursor, then removes that echo and the
// leading whitespace Clean removes, and passes the rest through.
type headFilter struct {
	prefix   string   // content above the cursor, "\n" line ends
	partial  string   // the cursor line before the cursor
	p        string   // partial, trimmed
	spaceEnd bool     // the prefix ends in a space or tab
	full     []string // the last full lines above the cursor, trimmed
	gen      bool
	head     string
	blank    bool // head is only whitespace
	decided  bool
}

func (h *headFilter) write(s string, final bool) string {
	if h.decided {
		return s
	}
	h.head += s
	h.blank = (h.blank || len(h.head) == len(s)) && strings.TrimSpace(s) == ""
	if !final && (h.blank || h.pending()) {
		// Whitespace alone never decides anything (and is not re-scanned).
		return ""
	}
	h.decided = true
	out := h.edit(h.head)
	h.head = ""
	if strings.TrimSpace(out) == "" {
		return ""
	}
	return out
}

// pending reports whether more output could change what edit does with
// the head: an echo that still matches, a restated cursor line not yet
// complete, or nothing but whitespace so far.
func (h *headFilter) pending() bool {
	nl := strings.LastIndexByte(h.head, '\n')
	cur := h.head[nl+1:]
	var lines []string
	if nl >= 0 {
		lines = strings.Split(h.head[:nl], "\n")
	}
	m := len(lines)
	for k := 0; k <= len(h.full); k++ {
		base := len(h.full) - k
		sig, ok := 0, true
		for i := 0; i < min(k, m); i++ {
			a := strings.TrimSpace(lines[i])
			if a != h.full[base+i] {
				ok = false
				break
			}
			sig += nonSpace(a)
		}
		switch {
		case !ok:
		case k > m:
			// The echo would go on: the current line must still match.
			if strings.HasPrefix(h.full[base+m], strings.TrimSpace(cur)) {
				return true
			}
		case h.p == "" || k < m:
			// Settled on complete lines.
		case k == 0 && utf8.RuneCountInString(h.p) < 3, sig+nonSpace(h.p) < 3:
			// removePrefixEcho ignores such a short restatement.
		default:
			// Line k may restate the cursor line.
			line := strings.TrimLeftFunc(cur, unicode.IsSpace)
			if len(line) < len(h.p) {
				if strings.HasPrefix(h.p, line) {
					return true
				}
			} else if strings.HasPrefix(line, h.p) && h.spaceEnd && strings.Trim(line[len(h.p):], " \t") == "" {
				return true // the blanks after it are trimmed: wait for text
			}
		}
	}
	return strings.TrimSpace(h.edit(h.head)) == ""
}

// edit applies Clean's start-of-output rules to the head.
func (h *headFilter) edit(s string) string {
	s = removePrefixEchoN(s, h.prefix, streamEchoLines)
	first := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) })
	if first < 0 {
		return s
	}
	if strings.TrimSpace(h.partial) == "" {
		// Cursor at the start of a (maybe indented) line: no blank lines
		// before the code, no doubled indentation.
		if nl := strings.LastIndexByte(s[:first], '\n'); nl >= 0 {
			s = s[nl+1:]
		}
		if h.partial != "" && strings.HasPrefix(s, h.partial) {
			s = s[len(h.partial):]
		}
	} else if h.gen && !strings.HasPrefix(s, "\n") && isCommentLine(h.partial) {
		s = "\n" + s
	}
	return s
}
