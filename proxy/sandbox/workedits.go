package sandbox

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The edits the workspace-flow stand-ins (workflows.go) make: a labelled
// comment line in a file, and a mechanical Jenkinsfile translation.

// Bounds of what the stand-ins read.
const (
	maxStages       = 20
	maxStepsPerJob  = 20
	maxCommandChars = 1000
)

var (
	// pathRe is a repository path with an extension ("src/cart.js"), or a
	// well-known extensionless file.
	pathRe = regexp.MustCompile(`(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.[A-Za-z0-9]{1,8}\b|\b(?:Jenkinsfile|Dockerfile|Makefile)\b`)
	// refRe is a path:line reference in a log ("src/cart.js:2", "a.py:10:3").
	refRe        = regexp.MustCompile(`((?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.[A-Za-z0-9]{1,8}):(\d{1,7})\b`)
	testPathRe   = regexp.MustCompile(`(?i)(^|/)(tests?|spec|__tests__)/|[._-](test|spec)\.[a-z0-9]+$|_test\.go$`)
	errorLineRe  = regexp.MustCompile(`(?i)\b(error|fail(ed|ure)?|not ok|exception|panic)\b`)
	jenkinsStage = regexp.MustCompile(`\bstage\s*\(\s*['"]([^'"\n]{1,80})['"]\s*\)`)
	jenkinsShell = regexp.MustCompile(`\b(?:sh|bat)\s*\(?\s*(?:'''([^\x00]*?)'''|"""([^\x00]*?)"""|'([^'\n]*)'|"([^"\n]*)")`)
	jenkinsImage = regexp.MustCompile(`\bimage\s*\(?\s*['"]([^'"\s]{1,200})['"]`)
	jobNameUnfit = regexp.MustCompile(`[^a-z0-9_-]+`)
)

// isPathLike reports whether s looks like a repository path.
func isPathLike(s string) bool { return pathRe.FindString(s) == s && s != "" }

// namedPath is the first repository path in text that is not part of a
// URL and that fit accepts (nil accepts any), or "".
func namedPath(text string, fit func(string) bool) string {
	for _, loc := range pathRe.FindAllStringIndex(text, -1) {
		start := loc[0]
		for start > 0 && !strings.ContainsRune(" \t\n`'\"(", rune(text[start-1])) {
			start--
		}
		if word := text[start:loc[1]]; strings.Contains(word, "://") || strings.Contains(word, "@") {
			continue
		}
		p := text[loc[0]:loc[1]]
		if (!strings.HasPrefix(p, ".") || strings.Contains(p, "/") || p == ciFile) && (fit == nil || fit(p)) {
			return p
		}
	}
	return ""
}

// faultRef is the last path:line of text whose path is not a test file,
// else its last path:line.
func faultRef(text string) (string, int) {
	refs := refRe.FindAllStringSubmatch(text, -1)
	for i := len(refs) - 1; i >= 0; i-- {
		if !testPathRe.MatchString(refs[i][1]) && atoi(refs[i][2]) > 0 {
			return refs[i][1], atoi(refs[i][2])
		}
	}
	if n := len(refs); n > 0 && atoi(refs[n-1][2]) > 0 {
		return refs[n-1][1], atoi(refs[n-1][2])
	}
	return "", 0
}

// errorLine is the log's first line that reports a failure, quoted.
func errorLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if errorLineRe.MatchString(l) && !refRe.MatchString(l) {
			return "`" + strings.ReplaceAll(oneLine(l, 120), "`", "'") + "`"
		}
	}
	return "no error line found"
}

// comment is a language's line-comment syntax.
type comment struct{ open, close string }

var (
	slashes = &comment{open: "// "}
	hashes  = &comment{open: "# "}
	dashes  = &comment{open: "-- "}
	markup  = &comment{open: "<!-- ", close: " -->"}
)

// commentSyntax is path's comment syntax by its extension or name, or nil
// when the stand-ins do not know it (they then leave the file alone).
func commentSyntax(p string) *comment {
	base := path.Base(p)
	switch base {
	case "Jenkinsfile":
		return slashes
	case "Dockerfile", "Makefile":
		return hashes
	}
	switch strings.ToLower(path.Ext(base)) {
	case ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".java", ".kt", ".scala", ".groovy", ".c", ".h", ".cc", ".cpp", ".hpp",
		".cs", ".rs", ".swift", ".php", ".dart":
		return slashes
	case ".py", ".rb", ".sh", ".bash", ".yml", ".yaml", ".toml", ".pl", ".r", ".tf":
		return hashes
	case ".sql", ".lua", ".hs":
		return dashes
	case ".md", ".html", ".xml", ".vue", ".svelte":
		return markup
	}
	return nil
}

// annotate is edit_file's arguments inserting note as a comment line
// above line (1-based; past the end appends) of content: old_str is the
// line, widened with its neighbours until it occurs once.
func annotate(p, content string, line int, note string) map[string]any {
	c := commentSyntax(p)
	if c == nil {
		c = hashes
	}
	note = strings.NewReplacer("\n", " ", "*/", "* /", "-->", "- ->").Replace(note)
	lines := strings.SplitAfter(content, "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	at := min(max(line, 1), len(lines)) - 1
	if at < 0 { // an empty file
		return map[string]any{"file_path": p, "old_str": content, "new_str": c.open + note + c.close + "\n"}
	}
	indent := lines[at][:len(lines[at])-len(strings.TrimLeft(lines[at], " \t"))]
	text := indent + c.open + note + c.close + "\n"
	// Widen by doubling steps: a file of identical lines costs O(n log n).
	lo, hi := at, at+1
	// Unique means one occurrence even counting overlaps (strings.Count
	// does not: "a\na\n" occurs once in "a\na\na\n" by its count).
	unique := func(s string) bool { return strings.Index(content, s) == strings.LastIndex(content, s) }
	for step := 1; !unique(strings.Join(lines[lo:hi], "")) && (lo > 0 || hi < len(lines)); step *= 2 {
		lo, hi = max(lo-step, 0), min(hi+step, len(lines))
	}
	old := strings.Join(lines[lo:hi], "")
	before := strings.Join(lines[lo:at], "")
	if line > len(lines) { // append after the last line
		last := lines[len(lines)-1]
		if !strings.HasSuffix(last, "\n") {
			text = "\n" + strings.TrimSuffix(text, "\n")
		}
		return map[string]any{"file_path": p, "old_str": old, "new_str": old + text}
	}
	return map[string]any{"file_path": p, "old_str": old, "new_str": before + text + old[len(before):]}
}

// ciJob is one job of the translated pipeline.
type ciJob struct {
	name, image string
	script      []string
}

// jenkinsToGitLabCI translates a Jenkinsfile mechanically: each
// stage('…') becomes a job in a stage of its own running the sh/bat steps
// of its block (the text up to the next stage), the first docker image
// before the stages becomes the default image, a stage's own image its
// job's. Without stages, the file's steps form one job "build"; without
// steps, a job says so. It returns the YAML and the number of jobs.
func jenkinsToGitLabCI(src, content string) (string, int) {
	stages := jenkinsStage.FindAllStringSubmatchIndex(content, maxStages+1)
	var jobs []ciJob
	firstStage := len(content)
	if len(stages) > 0 {
		firstStage = stages[0][0]
	}
	defaultImage := ""
	if m := jenkinsImage.FindStringSubmatch(content[:firstStage]); m != nil {
		defaultImage = m[1]
	}
	seen := map[string]bool{}
	for i, s := range stages[:min(len(stages), maxStages)] {
		end := len(content)
		if i+1 < len(stages) {
			end = stages[i+1][0]
		}
		block := content[s[1]:end]
		j := ciJob{name: jobName(content[s[2]:s[3]], seen), script: shellSteps(block)}
		if m := jenkinsImage.FindStringSubmatch(block); m != nil {
			j.image = m[1]
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		jobs = append(jobs, ciJob{name: "build", script: shellSteps(content)})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s.\n# A mechanical translation of %s: each stage('…') became a job in a stage of its own running its sh/bat steps.\n",
		standIn, oneLine(src, 100))
	if len(stages) > maxStages {
		fmt.Fprintf(&b, "# Only the first %d stages were translated.\n", maxStages)
	}
	if defaultImage != "" {
		fmt.Fprintf(&b, "default:\n  image: %s\n", yamlString(defaultImage))
	}
	b.WriteString("\nstages:\n")
	for _, j := range jobs {
		fmt.Fprintf(&b, "  - %s\n", yamlString(j.name))
	}
	for _, j := range jobs {
		fmt.Fprintf(&b, "\n%s:\n  stage: %s\n", yamlString(j.name), yamlString(j.name))
		if j.image != "" && j.image != defaultImage {
			fmt.Fprintf(&b, "  image: %s\n", yamlString(j.image))
		}
		script := j.script
		if len(script) == 0 {
			script = []string{"echo " + shQuote(fmt.Sprintf("Sandbox stand-in: no sh steps were found for this stage in %s", oneLine(src, 100)))}
		}
		b.WriteString("  script:\n")
		for _, s := range script {
			fmt.Fprintf(&b, "    - %s\n", yamlString(s))
		}
	}
	return b.String(), len(jobs)
}

// shellSteps are the commands of the sh/bat steps in block, one per
// non-blank line of a multi-line script.
func shellSteps(block string) []string {
	var out []string
	for _, m := range jenkinsShell.FindAllStringSubmatch(block, -1) {
		for _, l := range strings.Split(m[1]+m[2]+m[3]+m[4], "\n") {
			if l = strings.TrimSpace(l); l != "" && len(out) < maxStepsPerJob {
				out = append(out, head(l, maxCommandChars))
			}
		}
	}
	return out
}

// reservedCIKeys are top-level keys of .gitlab-ci.yml that are not jobs.
var reservedCIKeys = map[string]bool{"default": true, "include": true, "stages": true, "variables": true, "workflow": true,
	"image": true, "services": true, "cache": true, "before_script": true, "after_script": true, "pages": true}

// jobName is a job name for a Jenkins stage: lower case, unique.
func jobName(stage string, seen map[string]bool) string {
	n := strings.Trim(jobNameUnfit.ReplaceAllString(strings.ToLower(stage), "_"), "_")
	if n == "" || reservedCIKeys[n] || strings.HasPrefix(n, ".") {
		n = "stage_" + n
	}
	base := n
	for i := 2; seen[n]; i++ {
		n = fmt.Sprintf("%s_%d", base, i)
	}
	seen[n] = true
	return n
}

// yamlString is s as a YAML double-quoted scalar: Go's quoting escapes
// are YAML's, and it escapes every control character YAML refuses.
func yamlString(s string) string { return strconv.Quote(s) }
