package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The flow conventions, so the Agent Platform's flows (DAP Code Review)
// run to the end on the sandbox, deterministically:
//
//   - Code review: when the request offers a tool named reviewTool (GitLab's
//     name for publishing a DAP review; the flow's publish step offers it),
//     the reply calls it with merge_request_iid (the N of "Merge request !N"
//     or "Merge request N" in a user message) and review_output: a <review>
//     whose <summary> and comments say they are sandbox output, with one
//     comment per file for the first maxReviewFiles files of the annotated
//     diff in the user messages, on the file's first added line with text
//     (else its first added line, else its first removed line). The diff is
//     read in the annotated form the review context has: a
//     "== <path> (<kind>) ==" header line, then lines
//     "<old> <new> | <+|-| ><text>" (blank where a side has no number).
//   - Flow steps: when the request offers finalTool (the flow engine's
//     end-of-step tool) and no other convention answers, the reply calls it
//     with a short final_response "Sandbox reply to: <the last user
//     message's first words>" instead of a padded text answer, so a step's
//     answer stays small when the next step quotes it.
const (
	reviewTool     = "post_duo_code_review"
	finalTool      = "final_response_tool"
	maxReviewFiles = 5
	// quoteChars is how much of a commented line the comment quotes.
	quoteChars = 60
)

var (
	diffHeaderRe = regexp.MustCompile(`(?m)^== (.+) \((?:modified|new file|deleted|renamed from [^\n]*)\) ==$`)
	addedLineRe  = regexp.MustCompile(`^ +(\d+) \| \+(.*)$`)
	removedRe    = regexp.MustCompile(`^ *(\d+) {6}\| -(.*)$`)
	mergeReqRe   = regexp.MustCompile(`Merge request !?(\d+)`)
	// quoteSafe keeps a quoted line inside its code span and its comment:
	// no backticks, and the review markup's tags broken.
	quoteSafe = strings.NewReplacer("`", "'", "<review", "‹review", "</review", "‹/review",
		"<comment", "‹comment", "</comment", "‹/comment", "<summary", "‹summary", "</summary", "‹/summary")
)

// offered returns the request's tool named name when tool_choice allows
// it ("auto", "required", absent, or naming that tool), else nil.
func offered(g *genRequest, name string) *tool {
	if string(g.ToolChoice) == `"none"` {
		return nil
	}
	var forced struct {
		Name     string `json:"name"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(g.ToolChoice, &forced) == nil {
		if n := forced.Function.Name + forced.Name; n != "" && n != name {
			return nil
		}
	}
	for i := range g.Tools {
		if g.Tools[i].name() == name {
			return &g.Tools[i]
		}
	}
	return nil
}

// userTexts returns the text of every user message, in order.
func userTexts(g *genRequest) []string {
	var out []string
	for _, m := range g.Messages {
		if m.Role == "user" {
			out = append(out, contentText(m.Content))
		}
	}
	return out
}

// reviewCall answers the code-review convention, or nil.
func reviewCall(g *genRequest) *toolCall {
	if offered(g, reviewTool) == nil {
		return nil
	}
	users := userTexts(g)
	iid := 0
	for _, u := range users {
		if m := mergeReqRe.FindStringSubmatch(u); m != nil {
			iid, _ = strconv.Atoi(m[1])
			break
		}
	}
	if iid == 0 && len(users) > 0 {
		iid, _ = firstNumber(users[len(users)-1])
	}
	args, _ := json.Marshal(map[string]any{"merge_request_iid": iid, "review_output": sandboxReview(users)})
	h := sha256.Sum256(args)
	return &toolCall{ID: "call_sandbox_" + hex.EncodeToString(h[:6]), Name: reviewTool, Args: string(args)}
}

// reviewLine is the line a sandbox review comments on.
type reviewLine struct {
	file     string
	old, new int
	text     string
}

// diffLinesToReview finds, per file of the annotated diffs in texts (the
// first section of a path counts), the line firstChangedLine picks; at
// most maxReviewFiles files.
func diffLinesToReview(texts []string) (picked []reviewLine, files int) {
	seen := map[string]bool{}
	for _, t := range texts {
		heads := diffHeaderRe.FindAllStringSubmatchIndex(t, -1)
		for i, h := range heads {
			path := t[h[2]:h[3]]
			if seen[path] || strings.ContainsAny(path, "\"<>") {
				continue
			}
			seen[path] = true
			files++
			if len(picked) >= maxReviewFiles {
				continue
			}
			end := len(t)
			if i+1 < len(heads) {
				end = heads[i+1][0]
			}
			if l, ok := firstChangedLine(path, t[h[1]:end]); ok {
				picked = append(picked, l)
			}
		}
	}
	return picked, files
}

// firstChangedLine reads one file's annotated section: its first added
// line with text, else its first (blank) added line, else its first
// removed line.
func firstChangedLine(path, section string) (reviewLine, bool) {
	var added, blank, removed *reviewLine
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "==") { // the next section (a whole file)
			break
		}
		if m := addedLineRe.FindStringSubmatch(line); m != nil {
			n, err := strconv.Atoi(m[1])
			switch {
			case err != nil || n <= 0:
			case strings.TrimSpace(m[2]) != "":
				added = &reviewLine{file: path, new: n, text: m[2]}
			case blank == nil:
				blank = &reviewLine{file: path, new: n}
			}
			if added != nil {
				break
			}
		}
		if m := removedRe.FindStringSubmatch(line); m != nil && removed == nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
				removed = &reviewLine{file: path, old: n, text: m[2]}
			}
		}
	}
	for _, l := range []*reviewLine{added, blank, removed} {
		if l != nil {
			return *l, true
		}
	}
	return reviewLine{}, false
}

// sandboxReview writes the review XML for the diffs in texts.
func sandboxReview(texts []string) string {
	lines, files := diffLinesToReview(texts)
	var b strings.Builder
	b.WriteString("<review>\n<summary>\n")
	fmt.Fprintf(&b, "Sandbox review (NOT CONFIDENTIAL; no model was consulted): %d changed file(s) in the diff, %d deterministic comment(s), "+
		"one on the first changed line of each of the first %d files.\n</summary>\n", files, len(lines), maxReviewFiles)
	for _, l := range lines {
		side := "added"
		if l.new == 0 {
			side = "removed"
		}
		quote := strings.TrimSpace(head(quoteSafe.Replace(l.text), quoteChars))
		what := "is `" + quote + "`"
		if quote == "" {
			what = "is blank"
		}
		fmt.Fprintf(&b, "<comment file=\"%s\" old_line=\"%s\" new_line=\"%s\">\nSandbox comment (not a review): the first %s line of this file %s.\n</comment>\n",
			l.file, lineNumber(l.old), lineNumber(l.new), side, what)
	}
	b.WriteString("</review>")
	return b.String()
}

func lineNumber(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// finalResponseCall answers the flow-step convention, or nil.
func finalResponseCall(g *genRequest, last string) *toolCall {
	if offered(g, finalTool) == nil {
		return nil
	}
	words := strings.Fields(last)
	args, _ := json.Marshal(map[string]string{"final_response": "Sandbox reply to: " + strings.Join(words[:min(len(words), answerWords)], " ")})
	h := sha256.Sum256(args)
	return &toolCall{ID: "call_sandbox_" + hex.EncodeToString(h[:6]), Name: finalTool, Args: string(args)}
}
