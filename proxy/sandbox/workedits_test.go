package sandbox

import (
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAnnotate: the comment goes above the line with its indentation, in
// the file's comment syntax; old_str grows until it is unique; a line past
// the end appends.
func TestAnnotate(t *testing.T) {
	tests := []struct {
		path, content string
		line          int
		want          string
	}{
		{"a.js", "x\ny\n", 2, "x\n// N\ny\n"},
		{"a.py", "def f():\n    pass\n    pass\n", 2, "def f():\n    # N\n    pass\n    pass\n"},
		{"a.py", "a\na\na\n", 2, "a\n# N\na\na\n"},
		{"README.md", "# T\n", 1, "<!-- N -->\n# T\n"},
		{"q.sql", "select 1;", 1, "-- N\nselect 1;"},
		{"a.go", "package a\n", 5, "package a\n// N\n"},
		{"a.go", "package a", 5, "package a\n// N"},
		{"a.rb", "", 1, "# N\n"},
	}
	// A large file of identical lines: old_str grows to the whole file in
	// a few doubling steps (one line at a time took minutes).
	big := strings.Repeat("a\n", 100_000)
	tests = append(tests, struct {
		path, content string
		line          int
		want          string
	}{"big.rb", big, 50_000, big[:2*49_999] + "# N\n" + big[2*49_999:]})
	for _, tt := range tests {
		a := annotate(tt.path, tt.content, tt.line, "N")
		old, nw := a["old_str"].(string), a["new_str"].(string)
		if tt.content != "" && strings.Index(tt.content, old) != strings.LastIndex(tt.content, old) {
			t.Errorf("%s line %d: old_str %q is not unique", tt.path, tt.line, old)
		}
		if got := strings.Replace(tt.content, old, nw, 1); got != tt.want {
			t.Errorf("%s %q line %d:\n got %q\nwant %q", tt.path, head(tt.content, 40), tt.line, head(got, 80), head(tt.want, 80))
		}
	}
}

// TestJenkinsToGitLabCI: every translation is YAML with a job per stage,
// each with a script; names are valid and unique; odd input still gives
// a pipeline with a job that says what it found.
func TestJenkinsToGitLabCI(t *testing.T) {
	tests := []struct {
		name, in string
		jobs     map[string][]string // job → script
		image    string
	}{
		{"declarative", "pipeline { agent { docker { image 'maven:3' } }\n stages {\n stage('Build') { steps { sh 'mvn -B package' } }\n" +
			" stage('Unit tests') { agent { docker { image \"eclipse-temurin:21\" } } steps { sh(\"mvn test\"); sh 'echo ok' } } } }",
			map[string][]string{"build": {"mvn -B package"}, "unit_tests": {"mvn test", "echo ok"}}, "maven:3"},
		{"scripted, no stages", "node { sh 'make' ; bat 'dir' }", map[string][]string{"build": {"make", "dir"}}, ""},
		{"stage without steps, reserved and duplicate names", "stage('Stages') { echo 'x' }\nstage('stages') { sh 'a: b' }",
			map[string][]string{"stage_stages": nil, "stage_stages_2": {"a: b"}}, ""},
		{"empty", "", map[string][]string{"build": nil}, ""},
	}
	for _, tt := range tests {
		out, n := jenkinsToGitLabCI("Jenkinsfile", tt.in)
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s: %v\n%s", tt.name, err, out)
		}
		if n != len(tt.jobs) {
			t.Errorf("%s: %d jobs, want %d", tt.name, n, len(tt.jobs))
		}
		for job, script := range tt.jobs {
			j, _ := doc[job].(map[string]any)
			lines, _ := j["script"].([]any)
			if j == nil || len(lines) == 0 || j["stage"] != job {
				t.Fatalf("%s: job %s: %v\n%s", tt.name, job, j, out)
			}
			if script == nil {
				if !strings.Contains(lines[0].(string), "Sandbox stand-in: no sh steps") {
					t.Errorf("%s: %s: %v", tt.name, job, lines)
				}
				continue
			}
			if fmt.Sprint(lines) != fmt.Sprint(script) {
				t.Errorf("%s: %s script %v, want %v", tt.name, job, lines, script)
			}
		}
		if d, _ := doc["default"].(map[string]any); fmt.Sprint(d["image"]) != tt.image && tt.image != "" {
			t.Errorf("%s: default image %v", tt.name, d)
		}
		if !strings.HasPrefix(out, "# "+standIn) {
			t.Errorf("%s: not labelled:\n%s", tt.name, out)
		}
	}
}

// FuzzJenkinsToGitLabCI: whatever the source, the translation is YAML whose
// stages each have a job with a non-empty script, and it says it is a
// stand-in.
func FuzzJenkinsToGitLabCI(f *testing.F) {
	f.Add("pipeline { stages { stage('Build') { steps { sh 'make' } } } }")
	f.Add("stage(\"a\") { sh \"\"\"\n x: y\n - z\n\"\"\" }\nstage('default') {}")
	f.Fuzz(func(t *testing.T, src string) {
		out, n := jenkinsToGitLabCI("Jenkinsfile", src)
		var doc struct {
			Stages []string `yaml:"stages"`
		}
		var jobs map[string]any
		if err := yaml.Unmarshal([]byte(out), &doc); err != nil || yaml.Unmarshal([]byte(out), &jobs) != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(doc.Stages) != n || n == 0 || !strings.HasPrefix(out, "# "+standIn) {
			t.Fatalf("%d jobs, stages %v:\n%s", n, doc.Stages, out)
		}
		for _, st := range doc.Stages {
			j, _ := jobs[st].(map[string]any)
			if script, _ := j["script"].([]any); len(script) == 0 || j["stage"] != st {
				t.Fatalf("job %q: %v\n%s", st, j, out)
			}
		}
	})
}

// FuzzAnnotate: the edit's old_str occurs once in the file (so edit_file
// applies it at the place annotate meant), and applying it inserts the
// note as line number line, the rest of the file unchanged.
func FuzzAnnotate(f *testing.F) {
	f.Add("a.js", "x\ny\n", 2)
	f.Add("a.md", "a\na\na\n", 3)
	const marker = "NOTE-7f3a"
	f.Fuzz(func(t *testing.T, path, content string, line int) {
		a := annotate(path, content, line, marker)
		old, nw := a["old_str"].(string), a["new_str"].(string)
		if content != "" && strings.Index(content, old) != strings.LastIndex(content, old) {
			t.Fatalf("old_str %q occurs more than once in %q", old, content)
		}
		got := strings.Replace(content, old, nw, 1)
		if strings.Contains(content, marker) || !strings.HasSuffix(content, "\n") || line < 1 || line > strings.Count(content, "\n") {
			return
		}
		at := strings.Index(got, marker)
		start := strings.LastIndex(got[:at], "\n") + 1
		end := at + strings.Index(got[at:], "\n") + 1
		if got[:start]+got[end:] != content || strings.Count(got[:start], "\n") != line-1 {
			t.Fatalf("line %d of %q became %q", line, content, got)
		}
	})
}
