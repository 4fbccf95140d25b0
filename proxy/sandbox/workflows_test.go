package sandbox

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
)

// workspace is a fake world for the workspace-flow stand-ins: files, an
// issue tracker, a failed pipeline and a git log, answering tool calls as
// the Agent Platform's tools would (errors as "Error: …").
type workspace struct {
	files  map[string]string
	issues map[int]string // iid → issue JSON
	jobs   string         // failing jobs JSON
	logs   map[int]string // job id → log
	git    []string       // "command args" run
	mrs    []map[string]any
	fail   string // a tool that fails
}

func (w *workspace) run(t *testing.T, name string, args map[string]any) string {
	t.Helper()
	if name == w.fail {
		return "Error: the executor reported: " + name + " broke"
	}
	str := func(k string) string { s, _ := args[k].(string); return s }
	num := func(k string) int { f, _ := args[k].(float64); return int(f) }
	switch name {
	case issueTool:
		if is, ok := w.issues[num("issue_iid")]; ok {
			return is
		}
		return "Error: 404 Issue Not Found"
	case failingJobsTool:
		return w.jobs
	case jobLogTool:
		return w.logs[num("job_id")]
	case readTool, repoFileTool:
		if c, ok := w.files[str("file_path")]; ok {
			return c
		}
		return "Error: the executor reported: open " + str("file_path") + ": no such file or directory"
	case editTool:
		c, o := w.files[str("file_path")], str("old_str")
		if n := strings.Count(c, o); o == "" || n != 1 {
			return fmt.Sprintf("Error: old_str occurs %d times", n)
		}
		w.files[str("file_path")] = strings.Replace(c, o, str("new_str"), 1)
		return "Edited " + str("file_path")
	case writeTool:
		w.files[str("file_path")] = str("contents")
		return "Wrote " + str("file_path")
	case gitTool:
		w.git = append(w.git, strings.TrimSpace(str("command")+" "+str("args")))
		return ""
	case mergeTool:
		w.mrs = append(w.mrs, args)
		return `{"status":"created","iid":10}`
	}
	t.Fatalf("unexpected tool %s", name)
	return ""
}

// playStep runs one agent step against w until the sandbox answers with
// final_response_tool (or anything but a tool call), as the flow engine
// does, and returns the calls' names and the final answer.
func playStep(t *testing.T, w *workspace, tools []string, choice json.RawMessage, system, user string) (calls []string, final string) {
	t.Helper()
	g := &genRequest{Model: ModelChat, ToolChoice: choice, Messages: []message{msg("system", system), msg("user", user)}}
	for _, n := range tools {
		g.Tools = append(g.Tools, namedTool(t, n, `{"type":"object","properties":{}}`))
	}
	for range 30 {
		r := chatReply(g)
		if r.tool == nil {
			return calls, "text: " + r.text()
		}
		again := chatReply(g)
		if again.tool == nil || again.tool.Args != r.tool.Args || again.tool.ID != r.tool.ID {
			t.Fatal("not deterministic")
		}
		calls = append(calls, r.tool.Name)
		var args map[string]any
		if err := json.Unmarshal([]byte(r.tool.Args), &args); err != nil {
			t.Fatalf("%s args %s: %v", r.tool.Name, r.tool.Args, err)
		}
		if r.tool.Name == finalTool {
			return calls, args["final_response"].(string)
		}
		var a message
		_ = json.Unmarshal([]byte(fmt.Sprintf(`{"role":"assistant","content":"","tool_calls":[{"id":%q,"type":"function","function":{"name":%q,"arguments":%q}}]}`,
			r.tool.ID, r.tool.Name, r.tool.Args)), &a)
		res := msg("tool", w.run(t, r.tool.Name, args))
		res.ToolCallID = r.tool.ID
		g.Messages = append(g.Messages, a, res)
	}
	t.Fatal("the step did not end")
	return nil, ""
}

var (
	developerTools = []string{issueTool, "list_repository_tree", repoFileTool, "list_dir", "find_files", "grep", readTool, "read_files",
		writeTool, editTool, "mkdir", "run_command", gitTool, finalTool}
	diagnoseTools = []string{failingJobsTool, jobLogTool, repoFileTool, "list_repository_tree", readTool, "find_files", "grep", finalTool}
	fixTools      = []string{readTool, "read_files", "list_dir", "find_files", "grep", editTool, writeTool, "run_command", gitTool, finalTool}
	convertTools  = []string{readTool, "list_dir", "find_files", "grep", writeTool, editTool, gitTool, finalTool}
	// branchSystem is the branch rule of the flows' prompts.
	branchSystem = "You change code. Work on a new branch named duo/workflow-7 (run_git_command checkout with args \"-b duo/workflow-7\")."
)

const cartJS = "export function total(items) {\n  return items.reduce((s, i) => s + i.price, 0)\n}\n"

const failingLog = "$ npm test\nnot ok 1 - total multiplies price by quantity\n  location: 'test/cart.test.js:5:1'\n    4 !== 8\n" +
	"  stack: |-\n    TestContext.<anonymous> (test/cart.test.js:6:10)\n    lib/cart.js:2 total\nERROR: Job failed: exit code 1\n"

// TestWorkspaceFlowConventions plays each agent step of developer/v1,
// fix_pipeline/v1 and convert_to_gl_ci/v1 against a fake workspace: the
// calls come in the plan's order, the change is derived from what the
// tools returned and labelled, and a failing tool ends the step saying so.
func TestWorkspaceFlowConventions(t *testing.T) {
	issue := func(iid int, title, desc string) string {
		b, _ := json.Marshal(map[string]any{"iid": iid, "title": title, "description": desc})
		return string(b)
	}
	tests := []struct {
		name         string
		w            *workspace
		tools        []string
		system, user string
		calls        string
		final        []string          // substrings of the final answer
		files        map[string]string // files after the step (exact)
		git          []string
	}{{
		name:  "developer edits the file the issue names",
		w:     &workspace{files: map[string]string{"lib/cart.js": cartJS}, issues: map[int]string{3: issue(3, "Cart total ignores quantity", "e.g. `total` in lib/cart.js sums prices only.")}},
		tools: developerTools, system: branchSystem, user: "Issue to implement: https://gitlab.example/g/p/-/issues/3 (project 1).",
		calls: "get_issue run_git_command read_file edit_file run_git_command run_git_command run_git_command final_response_tool",
		final: []string{"pushed branch `duo/workflow-7` for issue #3", "lib/cart.js", "nothing was implemented"},
		files: map[string]string{"lib/cart.js": "// " + standIn + ": issue #3 \"Cart total ignores quantity\" names this file; a model would implement the issue here.\n" + cartJS},
		git:   []string{"checkout -b 'duo/workflow-7'", "add 'lib/cart.js'", "commit -m 'Sandbox stand-in for issue #3: Cart total ignores quantity'", "push -u origin 'duo/workflow-7'"},
	}, {
		name:  "developer: a script's shebang stays first",
		w:     &workspace{files: map[string]string{"bin/run.py": "#!/usr/bin/env python3\nprint('hi')\n"}, issues: map[int]string{5: issue(5, "Greet by name", "bin/run.py prints hi")}},
		tools: developerTools, system: branchSystem, user: "Issue to implement: 5 (project 1).",
		calls: "get_issue run_git_command read_file edit_file run_git_command run_git_command run_git_command final_response_tool",
		files: map[string]string{"bin/run.py": "#!/usr/bin/env python3\n# " + standIn + ": issue #5 \"Greet by name\" names this file; a model would implement the issue here.\nprint('hi')\n"},
	}, {
		name:  "developer: no file named, a labelled note file",
		w:     &workspace{files: map[string]string{}, issues: map[int]string{2: issue(2, "Add dark mode", "Users ask for a dark theme.")}},
		tools: developerTools, system: branchSystem, user: "Issue to implement: #2 (project 1).",
		calls: "get_issue run_git_command create_file_with_contents run_git_command run_git_command run_git_command final_response_tool",
		final: []string{"SANDBOX-issue-2.md"},
		files: map[string]string{"SANDBOX-issue-2.md": "# Issue #2: Add dark mode\n\n" + standIn + ". The issue names no readable file with a known comment syntax, so this note is the whole change.\n"},
	}, {
		name:  "developer: the named file is missing, a note file",
		w:     &workspace{files: map[string]string{}, issues: map[int]string{4: issue(4, "Fix src/gone.go", "")}},
		tools: developerTools, system: branchSystem, user: "Issue to implement: 4 (project 1).",
		calls: "get_issue run_git_command read_file create_file_with_contents run_git_command run_git_command run_git_command final_response_tool",
		final: []string{"SANDBOX-issue-4.md"},
	}, {
		name: "developer: the issue cannot be read",
		w:    &workspace{issues: map[int]string{}}, tools: developerTools, system: branchSystem, user: "Issue to implement: 9 (project 1).",
		calls: "get_issue final_response_tool", final: []string{standIn + ": stopped: get_issue failed: Error: 404 Issue Not Found"},
	}, {
		name:  "developer: a failed push ends the step",
		w:     &workspace{files: map[string]string{"lib/cart.js": cartJS}, issues: map[int]string{3: issue(3, "t", "lib/cart.js")}, fail: gitTool},
		tools: developerTools, system: branchSystem, user: "Issue to implement: 3 (project 1).",
		calls: "get_issue run_git_command final_response_tool", final: []string{"stopped: run_git_command failed"},
	}, {
		name: "pipeline diagnosis reads the failed job's log",
		w: &workspace{files: map[string]string{"lib/cart.js": cartJS}, jobs: `[{"id":7,"name":"lint","status":"success"},{"id":401,"name":"test","status":"failed"}]`,
			logs: map[int]string{401: failingLog}},
		tools: diagnoseTools, system: "You are diagnosing a failed GitLab CI pipeline.", user: "Failed pipeline: https://gitlab.example/g/p/-/pipelines/301. Its id is the number at the end of the URL if a URL is given.",
		calls: "get_pipeline_failing_jobs get_job_logs read_file final_response_tool",
		final: []string{"job `test` (401) of pipeline 301 failed: `not ok 1 - total multiplies price by quantity`", "At fault: lib/cart.js:2 (`return items.reduce((s, i) => s + i.price, 0)`)"},
	}, {
		name:  "pipeline diagnosis: a log without a location",
		w:     &workspace{jobs: `[{"id":5,"name":"build","status":"failed"}]`, logs: map[int]string{5: "$ make\nERROR: out of memory\n"}},
		tools: diagnoseTools, system: "x", user: "Failed pipeline: 12.",
		calls: "get_pipeline_failing_jobs get_job_logs final_response_tool", final: []string{"job `build` (5) of pipeline 12 failed: `ERROR: out of memory`; its log names no file:line"},
	}, {
		name: "pipeline diagnosis: no failed jobs",
		w:    &workspace{jobs: `[]`}, tools: diagnoseTools, system: "x", user: "Failed pipeline: 12.",
		calls: "get_pipeline_failing_jobs final_response_tool", final: []string{"pipeline 12 lists no failed job"},
	}, {
		name:  "pipeline fix marks the line the diagnosis names",
		w:     &workspace{files: map[string]string{"lib/cart.js": cartJS}},
		tools: fixTools, system: branchSystem, user: "Pipeline: https://gitlab.example/g/p/-/pipelines/301\n\nDiagnosis:\n" + standIn + ": job `test` failed. At fault: lib/cart.js:2 (`x`).",
		calls: "run_git_command read_file edit_file run_git_command run_git_command run_git_command final_response_tool",
		final: []string{"pushed branch `duo/workflow-7`", "above lib/cart.js:2"},
		files: map[string]string{"lib/cart.js": "export function total(items) {\n  // " + standIn + ": the failed pipeline's log points at this line; a model would fix it here.\n" +
			"  return items.reduce((s, i) => s + i.price, 0)\n}\n"},
		git: []string{"checkout -b 'duo/workflow-7'", "add 'lib/cart.js'", "commit -m 'Sandbox stand-in: mark lib/cart.js:2 named by the failed pipeline'", "push -u origin 'duo/workflow-7'"},
	}, {
		name:  "pipeline fix: a diagnosis from elsewhere (a path:line of its own)",
		w:     &workspace{files: map[string]string{"a/b.go": "package b\n\nfunc F() {}\n"}},
		tools: fixTools, system: branchSystem, user: "Pipeline: 1\n\nDiagnosis:\nThe build breaks at a/b.go:3 because F is unused.",
		calls: "run_git_command read_file edit_file run_git_command run_git_command run_git_command final_response_tool",
		files: map[string]string{"a/b.go": "package b\n\n// " + standIn + ": the failed pipeline's log points at this line; a model would fix it here.\nfunc F() {}\n"},
	}, {
		name: "pipeline fix: nothing to mark",
		w:    &workspace{}, tools: fixTools, system: branchSystem, user: "Pipeline: 1\n\nDiagnosis:\nUnknown.",
		calls: "final_response_tool", final: []string{"names no file:line"},
	}, {
		name: "CI conversion writes .gitlab-ci.yml",
		w: &workspace{files: map[string]string{"Jenkinsfile": "pipeline {\n  agent { docker { image 'node:22' } }\n  stages {\n" +
			"    stage('Test') { steps { sh 'npm ci && npm test' } }\n    stage('Deploy') { steps { sh '''\n      ./deploy.sh\n      echo \"done\"\n    ''' } }\n  }\n}\n"}},
		tools: convertTools, system: branchSystem, user: "Convert: Jenkinsfile",
		calls: "read_file run_git_command create_file_with_contents run_git_command run_git_command run_git_command final_response_tool",
		final: []string{"2 job(s) copied from the stages and sh steps of Jenkinsfile"},
		files: map[string]string{".gitlab-ci.yml": "# " + standIn + ".\n# A mechanical translation of Jenkinsfile: each stage('…') became a job in a stage of its own running its sh/bat steps.\n" +
			"default:\n  image: \"node:22\"\n\nstages:\n  - \"test\"\n  - \"deploy\"\n\n\"test\":\n  stage: \"test\"\n  script:\n    - \"npm ci && npm test\"\n\n" +
			"\"deploy\":\n  stage: \"deploy\"\n  script:\n    - \"./deploy.sh\"\n    - \"echo \\\"done\\\"\"\n"},
		git: []string{"checkout -b 'duo/workflow-7'", "add '.gitlab-ci.yml'", "commit -m 'Sandbox stand-in: .gitlab-ci.yml from Jenkinsfile'", "push -u origin 'duo/workflow-7'"},
	}, {
		name: "CI conversion: the source is missing",
		w:    &workspace{files: map[string]string{}}, tools: convertTools, system: branchSystem, user: "Convert: ci/Jenkinsfile.groovy",
		calls: "read_file final_response_tool", final: []string{"stopped: read_file failed"},
	}}
	for _, tt := range tests {
		// Agents get tool_choice "auto" (absent) or, where the engine
		// forces tool use, "required": the plan is the same.
		for _, choice := range []string{``, `"required"`} {
			t.Run(tt.name+" "+choice, func(t *testing.T) {
				w := *tt.w
				w.files = maps.Clone(tt.w.files)
				calls, final := playStep(t, &w, tt.tools, json.RawMessage(choice), tt.system, tt.user)
				checkStep(t, &w, calls, final, tt.calls, tt.final, tt.files, tt.git)
			})
		}
	}
}

// checkStep compares a played step with what the table wants.
func checkStep(t *testing.T, w *workspace, calls []string, final, wantCalls string, wantFinal []string, files map[string]string, git []string) {
	t.Helper()
	if got := strings.Join(calls, " "); got != wantCalls {
		t.Fatalf("calls\n got %s\nwant %s\nfinal: %s", got, wantCalls, final)
	}
	if !strings.HasPrefix(final, standIn+": ") {
		t.Fatalf("final answer not labelled: %q", final)
	}
	for _, want := range wantFinal {
		if !strings.Contains(final, want) {
			t.Errorf("final answer lacks %q:\n%s", want, final)
		}
	}
	for f, want := range files {
		if got := w.files[f]; got != want {
			t.Errorf("%s:\n got %q\nwant %q", f, got, want)
		}
	}
	if git != nil && strings.Join(w.git, "\n") != strings.Join(git, "\n") {
		t.Errorf("git commands:\n%s", strings.Join(w.git, "\n"))
	}
}

// TestMergeRequestConvention: the flows' last step opens the merge request
// from the branch the work summary names, labelled; without such a branch
// it still calls (the tool's error then goes back to the flow).
func TestMergeRequestConvention(t *testing.T) {
	tests := []struct {
		user, branch string
	}{
		{"Goal: https://gitlab.example/g/p/-/issues/3\n\nWork summary:\n" + standIn + ": pushed branch `duo/workflow-7` for issue #3.", "duo/workflow-7"},
		{"Goal: Jenkinsfile\n\nWork summary:\nPushed to duo/workflow-12 with the new file.", "duo/workflow-12"},
		{"Goal: x\n\nWork summary:\nNothing pushed.", ""},
	}
	for _, tt := range tests {
		for _, choice := range []string{``, `"required"`, `{"type":"function","function":{"name":"create_merge_request"}}`} {
			g := &genRequest{Model: ModelChat, ToolChoice: json.RawMessage(choice), Tools: []tool{namedTool(t, mergeTool,
				`{"type":"object","properties":{"source_branch":{"type":"string"},"title":{"type":"string"}},"required":["source_branch","title"]}`)},
				Messages: []message{msg("system", "Open the merge request."), msg("user", tt.user)}}
			r := chatReply(g)
			var args map[string]string
			if r.tool == nil || r.tool.Name != mergeTool || json.Unmarshal([]byte(r.tool.Args), &args) != nil {
				t.Fatalf("%q: %+v", tt.user, r)
			}
			if args["source_branch"] != tt.branch || !strings.HasPrefix(args["title"], "Sandbox stand-in: ") || len(args["title"]) > 70 ||
				!strings.HasPrefix(args["description"], standIn) {
				t.Fatalf("%q: %v", tt.user, args)
			}
		}
	}
}

// TestWorkspaceConventionsStayOff: other tool sets, tool_choice "none" or
// naming another tool, and a history this plan did not make leave the
// stand-ins out (or end them at once).
func TestWorkspaceConventionsStayOff(t *testing.T) {
	mk := func(tools []string, choice string, msgs ...message) *genRequest {
		g := &genRequest{Model: ModelChat, ToolChoice: json.RawMessage(choice), Messages: msgs}
		for _, n := range tools {
			g.Tools = append(g.Tools, namedTool(t, n, `{"type":"object","properties":{}}`))
		}
		return g
	}
	user := msg("user", "Issue to implement: 3 (project 1).")
	for _, g := range []*genRequest{
		mk([]string{readTool, "grep", finalTool}, ``, user),                                 // the review's explorer
		mk([]string{editTool, gitTool, finalTool}, ``, msg("user", "Convert: Jenkinsfile")), // no write tool
		mk(developerTools, `"none"`, user),
		mk(developerTools, `{"type":"function","function":{"name":"grep"}}`, user),
		mk([]string{mergeTool, finalTool}, ``, msg("user", "Goal: x\nWork summary: branch `a`")),
		mk([]string{issueTool, "create_work_item_note", mergeTool}, ``, msg("user", "What is wrong in issue 1? Work summary: branch `a`")), // Agentic Chat
		mk([]string{mergeTool}, ``, msg("user", "Open a merge request for branch `a`")),                                                    // not our prompt
	} {
		if tc := workflowCall(g); tc != nil {
			t.Errorf("tools %v, choice %s: %+v", g.Tools, g.ToolChoice, tc)
		}
	}
	var foreign message
	_ = json.Unmarshal([]byte(`{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"grep","arguments":"{}"}}]}`), &foreign)
	res := msg("tool", "nothing")
	res.ToolCallID = "c1"
	tc := workflowCall(mk(developerTools, ``, user, foreign, res))
	if tc == nil || tc.Name != finalTool || !strings.Contains(tc.Args, "stopped: the conversation's call 1 is grep, not the get_issue this stand-in plays") {
		t.Fatalf("foreign history: %+v", tc)
	}
}
