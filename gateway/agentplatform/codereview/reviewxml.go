package codereview

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MaxComments is the most comments GitLab turns into draft notes.
const MaxComments = 50

// Comment is one review comment. A line is 0 when absent; at least one of
// OldLine and NewLine is set.
type Comment struct {
	File    string `json:"file"`
	OldLine int    `json:"old_line,omitempty"`
	NewLine int    `json:"new_line,omitempty"`
	Body    string `json:"body"`
}

// Review is a review to publish.
type Review struct {
	Summary  string    `json:"summary,omitempty"`
	Comments []Comment `json:"comments"`
}

// Markup GitLab's parser keys on; a body or summary must not contain it,
// or it would end (or start) an element early.
var reservedTags = []string{"<review>", "</review>", "<comment ", "<comment>", "</comment>", "<summary>", "</summary>"}

// neutralise breaks reserved tags in free text with a zero-width space
// after "<", which renders the same in Markdown and never matches (GitLab's
// patterns are case-sensitive, so only exact tags matter).
func neutralise(s string) string {
	for _, t := range reservedTags {
		s = strings.ReplaceAll(s, t, "<\u200b"+t[1:])
	}
	return s
}

// fileAttrOK: the attribute parser reads key="value" without escapes, so a
// value must not hold a quote, and the element ends at the first ">".
func fileAttrOK(f string) bool {
	return f != "" && !strings.ContainsAny(f, "\"<>\n\r") && strings.TrimSpace(f) == f
}

// Write renders r as GitLab's review XML: <review> and </review> on their
// own lines, each comment starting a line and ending with </comment> at a
// line end, attribute values unquoted-safe, bodies and the summary with
// reserved tags neutralised. Comments that cannot be written (no file, no
// line, empty body, a file name with quotes or angle brackets) are left
// out; at most MaxComments are written. It returns how many were dropped.
func Write(r Review) (string, int) {
	var b strings.Builder
	b.WriteString("<review>\n")
	if s := strings.TrimSpace(neutralise(r.Summary)); s != "" {
		b.WriteString("<summary>\n" + s + "\n</summary>\n")
	}
	written, dropped := 0, 0
	for _, c := range r.Comments {
		body := strings.TrimSpace(neutralise(c.Body))
		if written >= MaxComments || !fileAttrOK(c.File) || (c.OldLine <= 0 && c.NewLine <= 0) || body == "" {
			dropped++
			continue
		}
		fmt.Fprintf(&b, "<comment file=\"%s\" old_line=\"%s\" new_line=\"%s\">\n%s\n</comment>\n", c.File, lineAttr(c.OldLine), lineAttr(c.NewLine), body)
		written++
	}
	b.WriteString("</review>")
	return b.String(), dropped
}

func lineAttr(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// Checker rules, from GitLab's documented parser: the last
// <review>…</review> block counts; in it each <comment attrs>body</comment>
// with key="value" attributes; a comment counts only with a non-blank body,
// a file and an integer old_line or new_line; an optional <summary>.
var (
	reviewRE  = regexp.MustCompile(`(?s)<review>(.*?)</review>`)
	commentRE = regexp.MustCompile(`(?s)<comment\s([^>]*?)>(.*?)</comment>`)
	attrRE    = regexp.MustCompile(`([^\s=]+)="([^"]*)"`)
	summaryRE = regexp.MustCompile(`(?s)<summary>(.*?)</summary>`)
	// GitLab's older parser anchors elements at line starts and ends.
	strictReviewRE  = regexp.MustCompile(`(?ms)^<review>(.+)</review>$`)
	strictCommentRE = regexp.MustCompile(`(?ms)^<comment (.+?)>\n?(.+?)</comment>$`)
)

// Parsed is what GitLab reads from a review output.
type Parsed struct {
	Found    bool
	Summary  string
	Comments []Comment
	// Invalid counts comments GitLab would skip.
	Invalid int
}

// Parse reads review output as GitLab's parser does.
func Parse(out string) Parsed {
	blocks := reviewRE.FindAllStringSubmatch(out, -1)
	if len(blocks) == 0 {
		return Parsed{}
	}
	inner := blocks[len(blocks)-1][1]
	p := Parsed{Found: true}
	if m := summaryRE.FindStringSubmatch(inner); m != nil {
		p.Summary = strings.TrimSpace(m[1])
	}
	for _, m := range commentRE.FindAllStringSubmatch(inner, -1) {
		attrs := map[string]string{}
		for _, a := range attrRE.FindAllStringSubmatch(m[1], -1) {
			attrs[a[1]] = a[2]
		}
		c := Comment{File: attrs["file"], Body: strings.TrimSpace(m[2])}
		c.OldLine, _ = strconv.Atoi(attrs["old_line"])
		c.NewLine, _ = strconv.Atoi(attrs["new_line"])
		if c.Body == "" || c.File == "" || (c.OldLine <= 0 && c.NewLine <= 0) {
			p.Invalid++
			continue
		}
		p.Comments = append(p.Comments, c)
	}
	return p
}

// Check verifies that out is what this service must post: one review block
// that GitLab's parsers (the line-anchored and the lenient one) read the
// same, at most MaxComments valid comments, none invalid, each on a line
// of the merge request's diff.
func Check(out string, files map[string]Lines) error {
	p := Parse(out)
	if !p.Found {
		return fmt.Errorf("no <review> block")
	}
	if n := len(reviewRE.FindAllString(out, -1)); n != 1 {
		return fmt.Errorf("%d review blocks; want exactly one", n)
	}
	if p.Invalid > 0 {
		return fmt.Errorf("%d comments GitLab would skip", p.Invalid)
	}
	if len(p.Comments) > MaxComments {
		return fmt.Errorf("%d comments; GitLab posts at most %d", len(p.Comments), MaxComments)
	}
	strict := strictReviewRE.FindStringSubmatch(out)
	if strict == nil {
		return fmt.Errorf("<review> and </review> are not on their own lines")
	}
	if n := len(strictCommentRE.FindAllString(strict[1], -1)); n != len(p.Comments) {
		return fmt.Errorf("the line-anchored parser reads %d comments, the lenient one %d", n, len(p.Comments))
	}
	for i, c := range p.Comments {
		l, ok := files[c.File]
		if !ok {
			return fmt.Errorf("comment %d: %s is not a file of the diff", i, c.File)
		}
		if c.NewLine > 0 && !l.New[c.NewLine] {
			return fmt.Errorf("comment %d: %s has no new line %d in the diff", i, c.File, c.NewLine)
		}
		if c.NewLine > 0 && c.OldLine != l.Context[c.NewLine] {
			return fmt.Errorf("comment %d: %s line %d: old_line %d does not match the diff (want %d)", i, c.File, c.NewLine, c.OldLine, l.Context[c.NewLine])
		}
		if c.NewLine <= 0 && !l.Old[c.OldLine] {
			return fmt.Errorf("comment %d: %s has no old line %d in the diff", i, c.File, c.OldLine)
		}
	}
	return nil
}

// Correct turns a model's review output into what may be posted: comments
// on files or lines the diff does not have are moved to the nearest
// commentable line of the same file within 3 lines, else dropped; the rest
// is rewritten by Write. It reports what it dropped; an output without a
// <review> block is an error for the model to fix.
func Correct(out string, files map[string]Lines) (string, []string, error) {
	p := Parse(out)
	if !p.Found {
		return "", nil, fmt.Errorf("the review must be wrapped in <review>…</review> with <comment file=\"…\" old_line=\"…\" new_line=\"…\">…</comment> entries")
	}
	var notes []string
	if p.Invalid > 0 {
		notes = append(notes, fmt.Sprintf("%d comments without file, line or text were dropped", p.Invalid))
	}
	r := Review{Summary: p.Summary}
	for _, c := range p.Comments {
		l, ok := files[c.File]
		if !ok {
			notes = append(notes, fmt.Sprintf("dropped a comment on %s: not a file of this merge request's diff", bound(c.File, 80)))
			continue
		}
		if fixed, ok := onDiffLine(c, l); ok {
			r.Comments = append(r.Comments, fixed)
			continue
		}
		notes = append(notes, fmt.Sprintf("dropped a comment on %s line %d: not a line of the diff", bound(c.File, 80), max(c.NewLine, c.OldLine)))
	}
	if len(r.Comments) > MaxComments {
		notes = append(notes, fmt.Sprintf("kept the first %d of %d comments", MaxComments, len(r.Comments)))
		r.Comments = r.Comments[:MaxComments]
	}
	text, _ := Write(r)
	return text, notes, nil
}

// onDiffLine keeps a comment whose line is in the diff; a new line off by
// at most 3 moves to the nearest added or context line.
func onDiffLine(c Comment, l Lines) (Comment, bool) {
	if c.NewLine > 0 {
		for d := 0; d <= 3; d++ {
			for _, n := range []int{c.NewLine - d, c.NewLine + d} {
				if l.New[n] {
					c.NewLine, c.OldLine = n, l.Context[n]
					return c, true
				}
			}
		}
		return c, false
	}
	return c, l.Old[c.OldLine]
}

func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
