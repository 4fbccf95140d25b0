package codereview

import (
	"fmt"
	"strconv"
	"strings"
)

// FileDiff is one changed file of a merge request.
type FileDiff struct {
	OldPath, NewPath string
	Diff             string
	NewFile          bool
	DeletedFile      bool
	RenamedFile      bool
}

// Lines are the line numbers a comment may name in one file: new-side
// lines (added or context) and old-side lines (removed or context).
type Lines struct {
	New map[int]bool
	Old map[int]bool
	// Context maps an unchanged line's new number to its old one; GitLab
	// positions a note on such a line by both.
	Context map[int]int
}

// DiffLines reads a unified diff's hunks into the commentable lines.
func DiffLines(diff string) Lines {
	l := Lines{New: map[int]bool{}, Old: map[int]bool{}, Context: map[int]int{}}
	oldN, newN := 0, 0
	in := false
	for _, line := range strings.Split(diff, "\n") {
		if strings.HasPrefix(line, "@@") {
			o, n, ok := hunkStart(line)
			oldN, newN, in = o, n, ok
			continue
		}
		if !in || line == "" {
			continue
		}
		switch line[0] {
		case '+':
			l.New[newN] = true
			newN++
		case '-':
			l.Old[oldN] = true
			oldN++
		case ' ':
			l.New[newN] = true
			l.Old[oldN] = true
			l.Context[newN] = oldN
			newN++
			oldN++
		case '\\': // "\ No newline at end of file"
		default:
			in = false
		}
	}
	return l
}

// hunkStart reads "@@ -a,b +c,d @@".
func hunkStart(h string) (oldStart, newStart int, ok bool) {
	f := strings.Fields(h)
	if len(f) < 3 || !strings.HasPrefix(f[1], "-") || !strings.HasPrefix(f[2], "+") {
		return 0, 0, false
	}
	o, err1 := strconv.Atoi(strings.SplitN(f[1][1:], ",", 2)[0])
	n, err2 := strconv.Atoi(strings.SplitN(f[2][1:], ",", 2)[0])
	if err1 != nil || err2 != nil || o < 0 || n < 0 {
		return 0, 0, false
	}
	return o, n, true
}

// Annotate renders a diff with each line's old and new number so a model
// can cite lines exactly: "old new | +text".
func Annotate(diff string) string {
	var b strings.Builder
	oldN, newN := 0, 0
	in := false
	num := func(n int, show bool) string {
		if !show {
			return "    "
		}
		return fmt.Sprintf("%4d", n)
	}
	for _, line := range strings.Split(strings.TrimSuffix(diff, "\n"), "\n") {
		if strings.HasPrefix(line, "@@") {
			o, n, ok := hunkStart(line)
			oldN, newN, in = o, n, ok
			b.WriteString(line + "\n")
			continue
		}
		if !in || line == "" {
			b.WriteString(line + "\n")
			continue
		}
		switch line[0] {
		case '+':
			fmt.Fprintf(&b, "%s %s | %s\n", num(0, false), num(newN, true), line)
			newN++
		case '-':
			fmt.Fprintf(&b, "%s %s | %s\n", num(oldN, true), num(0, false), line)
			oldN++
		case ' ':
			fmt.Fprintf(&b, "%s %s | %s\n", num(oldN, true), num(newN, true), line)
			oldN++
			newN++
		default:
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
