package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The workspace-flow conventions: SANDBOX STAND-INS, not a model. They let
// the Agent Platform's flows that change code (developer/v1, fix_pipeline/v1,
// convert_to_gl_ci/v1) run every step for real on the sandbox — GitLab reads
// and writes, the executor's file and git actions, the merge request — with
// a deterministic change derived from what the tools return. The change is
// labelled as such and never pretends to solve the task.
//
// Each agent step is recognised by what the flow offers (tool names, GitLab's)
// plus, where tool sets overlap, a line of the flow's own prompt; the step
// then plays a fixed plan, one tool call per request, reading the results of
// the calls it made so far (the conversation's tool messages):
//
//   - developer (get_issue, edit_file, run_git_command and final_response_tool
//     offered): read the issue whose number the goal ends with; branch; if the
//     issue names a file (a path with an extension) that can be read and has a
//     known comment syntax, insert a labelled comment at its top (after a
//     shebang), else write a labelled note file SANDBOX-issue-<iid>.md; add,
//     commit, push; answer with the branch.
//   - pipeline diagnosis (get_pipeline_failing_jobs, get_job_logs and
//     final_response_tool offered): list the failed jobs of the pipeline the
//     goal names, read the first one's log, take the last path:line in it that
//     is not a test file (else the last one), read that line, and answer
//     "At fault: <path>:<line>" with the log's first error line.
//   - pipeline fix (edit_file, run_git_command, final_response_tool offered and
//     a "Diagnosis:" line in the user message, the fix step's prompt): branch;
//     read the file at fault; insert a labelled comment above the line; add,
//     commit, push; answer with the branch.
//   - CI conversion (create_file_with_contents, run_git_command,
//     final_response_tool offered and a user message starting "Convert:"):
//     read the named file (a Jenkinsfile); branch; write .gitlab-ci.yml with
//     one job per stage('…') running its sh steps (jenkinsToGitLabCI); add,
//     commit, push; answer with the branch.
//   - merge request (create_merge_request the only tool offered and a "Work
//     summary:" in the user message: the flows' last step, a OneOffComponent
//     with our open_merge_request prompt; Agentic Chat offers the tool among
//     many): open it from the branch named in the work summary ("branch `…`",
//     else duo/workflow-<n>), with a labelled title and description.
//
// A tool error, or a history that is not this plan's (another model's calls),
// ends the step at once with a final answer saying so.
const (
	issueTool       = "get_issue"
	failingJobsTool = "get_pipeline_failing_jobs"
	jobLogTool      = "get_job_logs"
	readTool        = "read_file"
	repoFileTool    = "get_repository_file"
	editTool        = "edit_file"
	writeTool       = "create_file_with_contents"
	gitTool         = "run_git_command"
	mergeTool       = "create_merge_request"

	// standIn opens every text these conventions write.
	standIn = "Sandbox stand-in (NOT CONFIDENTIAL; no model was consulted)"
	// workSummary marks the merge request step's user message (the
	// open_merge_request prompt's template).
	workSummary = "Work summary:"
	// ciFile is what the CI conversion writes.
	ciFile = ".gitlab-ci.yml"
)

var (
	branchNamedRe = regexp.MustCompile("branch named `?([A-Za-z0-9][A-Za-z0-9._/-]{0,100})")
	summaryBranch = regexp.MustCompile("branch `([A-Za-z0-9][A-Za-z0-9._/-]{0,100})`")
	duoBranchRe   = regexp.MustCompile(`duo/workflow-\d+`)
	diagnosisRe   = regexp.MustCompile(`(?m)^Diagnosis:\s*$`)
	atFaultRe     = regexp.MustCompile(`At fault: ([A-Za-z0-9_.][A-Za-z0-9_./-]*):(\d+)`)
)

// workflowCall answers the workspace-flow conventions, or nil.
func workflowCall(g *genRequest) *toolCall {
	users := userTexts(g)
	if len(users) == 0 {
		return nil
	}
	if offered(g, mergeTool) != nil && len(g.Tools) == 1 && slices.ContainsFunc(users, func(u string) bool { return strings.Contains(u, workSummary) }) {
		return mergeRequestCall(users)
	}
	if offered(g, finalTool) == nil {
		return nil
	}
	system := systemText(g)
	p := &plan{done: history(g)}
	switch {
	case hasTool(g, issueTool) && hasTool(g, editTool) && hasTool(g, gitTool):
		developerPlan(p, users[0], system)
	case hasTool(g, failingJobsTool) && hasTool(g, jobLogTool):
		diagnosePlan(p, g, users[0])
	case hasTool(g, editTool) && hasTool(g, gitTool) && diagnosisRe.MatchString(users[0]):
		fixPlan(p, users[0], system)
	case hasTool(g, writeTool) && hasTool(g, gitTool) && strings.HasPrefix(users[0], "Convert:"):
		convertPlan(p, users[0], system)
	default:
		return nil
	}
	p.finish("the plan ended without an answer")
	return p.call()
}

func hasTool(g *genRequest, name string) bool {
	for i := range g.Tools {
		if g.Tools[i].name() == name {
			return true
		}
	}
	return false
}

// systemText is the system prompt: Anthropic's system field and every
// system or developer message.
func systemText(g *genRequest) string {
	s := contentText(g.System)
	for _, m := range g.Messages {
		if m.Role == "system" || m.Role == "developer" {
			s += "\n" + contentText(m.Content)
		}
	}
	return s
}

// doneCall is a tool call the conversation already made, with its result.
type doneCall struct {
	name, result string
	answered     bool
}

// history lists the assistant's tool calls in order with their results
// (matched by tool_call_id, else in order).
func history(g *genRequest) []doneCall {
	var out []doneCall
	ids := map[string]int{}
	for _, m := range g.Messages {
		switch m.Role {
		case "assistant":
			for _, c := range m.ToolCalls {
				if c.ID != "" {
					ids[c.ID] = len(out)
				}
				out = append(out, doneCall{name: c.Function.Name})
			}
		case "tool":
			i, ok := ids[m.ToolCallID]
			if !ok {
				for i = 0; i < len(out) && out[i].answered; i++ {
				}
			}
			if i < len(out) {
				out[i].result, out[i].answered = contentText(m.Content), true
			}
		}
	}
	return out
}

// plan replays a fixed sequence of tool calls against the history: do
// returns a made call's result, or records the first call not yet made.
type plan struct {
	done []doneCall
	i    int
	next *toolCall
}

// do returns the result of the plan's next call when the history has it;
// otherwise that call becomes the reply and do returns false.
func (p *plan) do(name string, args map[string]any) (string, bool) {
	if p.next != nil {
		return "", false
	}
	if p.i < len(p.done) {
		d := p.done[p.i]
		p.i++
		if d.name != name || !d.answered {
			p.finish(fmt.Sprintf("stopped: the conversation's call %d is %s, not the %s this stand-in plays", p.i, d.name, name))
			return "", false
		}
		return d.result, true
	}
	b, _ := json.Marshal(args)
	p.next = newCall(name, string(b), len(p.done))
	return "", false
}

// must is do for a call whose failure ends the plan.
func (p *plan) must(name string, args map[string]any) (string, bool) {
	out, ok := p.do(name, args)
	if ok && failed(out) {
		p.finish(fmt.Sprintf("stopped: %s failed: %s", name, firstLine(out, 200)))
		return "", false
	}
	return out, ok
}

// finish makes the final answer the reply, unless a call already is.
func (p *plan) finish(summary string) {
	if p.next == nil {
		b, _ := json.Marshal(map[string]string{"final_response": standIn + ": " + summary})
		p.next = newCall(finalTool, string(b), len(p.done))
	}
}

func (p *plan) call() *toolCall { return p.next }

func newCall(name, args string, step int) *toolCall {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s", name, step, args)))
	return &toolCall{ID: "call_sandbox_" + hex.EncodeToString(h[:6]), Name: name, Args: args}
}

// failed reports a tool result the flow engine marked as an error.
func failed(result string) bool { return strings.HasPrefix(result, "Error:") }

// firstLine is s's first non-blank line, cut to n characters.
func firstLine(s string, n int) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return head(l, n)
		}
	}
	return ""
}

// branchFor is the branch the step's prompt names, else one derived from
// the goal.
func branchFor(system, goal string) string {
	if m := branchNamedRe.FindStringSubmatch(system); m != nil {
		return strings.TrimRight(m[1], ".")
	}
	h := sha256.Sum256([]byte(goal))
	return "sandbox/" + hex.EncodeToString(h[:4])
}

// shQuote quotes s for run_git_command's shell-like args.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

// commitAndPush plays add, commit and push of paths on branch.
func commitAndPush(p *plan, branch, message string, paths ...string) bool {
	var quoted []string
	for _, f := range paths {
		quoted = append(quoted, shQuote(f))
	}
	if _, ok := p.must(gitTool, map[string]any{"command": "add", "args": strings.Join(quoted, " ")}); !ok {
		return false
	}
	if _, ok := p.must(gitTool, map[string]any{"command": "commit", "args": "-m " + shQuote(message)}); !ok {
		return false
	}
	_, ok := p.must(gitTool, map[string]any{"command": "push", "args": "-u origin " + shQuote(branch)})
	return ok
}

// numberAfter is the number following marker in s ("issues/" in a URL),
// else the last number in s.
func numberAfter(s, marker string) int {
	if i := strings.LastIndex(s, marker); i >= 0 {
		if n, ok := firstNumber(s[i+len(marker):]); ok {
			return n
		}
	}
	n := 0
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		if v, err := strconv.Atoi(f); err == nil && len(f) < 10 {
			n = v
		}
	}
	return n
}

func developerPlan(p *plan, user, system string) {
	goal := strings.TrimSuffix(strings.TrimPrefix(user, "Issue to implement: "), ".")
	goal, _, _ = strings.Cut(goal, " (project ")
	iid := numberAfter(goal, "issues/")
	out, ok := p.must(issueTool, map[string]any{"issue_iid": iid})
	if !ok {
		return
	}
	var issue struct {
		IID         int    `json:"iid"`
		Title       string `json:"title"`
		Description string `json:"description"`
	}
	_ = json.Unmarshal([]byte(out), &issue)
	if issue.IID == 0 {
		issue.IID = iid
	}
	branch := branchFor(system, goal)
	if _, ok := p.must(gitTool, map[string]any{"command": "checkout", "args": "-b " + shQuote(branch)}); !ok {
		return
	}
	note := fmt.Sprintf("%s: issue #%d %q names this file; a model would implement the issue here.", standIn, issue.IID, oneLine(issue.Title, 80))
	changed := ""
	if path := namedPath(issue.Title+"\n"+issue.Description, func(p string) bool { return commentSyntax(p) != nil }); path != "" {
		if content, ok := p.do(readTool, map[string]any{"file_path": path}); ok && !failed(content) {
			line := 1
			if strings.HasPrefix(content, "#!") {
				line = 2
			}
			if _, ok := p.must(editTool, annotate(path, content, line, note)); !ok {
				return
			}
			changed = path
		} else if !ok {
			return
		}
	}
	if changed == "" {
		changed = fmt.Sprintf("SANDBOX-issue-%d.md", issue.IID)
		body := fmt.Sprintf("# Issue #%d: %s\n\n%s. The issue names no readable file with a known comment syntax, so this note is the whole change.\n",
			issue.IID, oneLine(issue.Title, 200), standIn)
		if _, ok := p.must(writeTool, map[string]any{"file_path": changed, "contents": body}); !ok {
			return
		}
	}
	if !commitAndPush(p, branch, fmt.Sprintf("Sandbox stand-in for issue #%d: %s", issue.IID, oneLine(issue.Title, 60)), changed) {
		return
	}
	p.finish(fmt.Sprintf("pushed branch `%s` for issue #%d (%s) with a labelled note in %s; nothing was implemented.", branch, issue.IID, oneLine(issue.Title, 80), changed))
}

func diagnosePlan(p *plan, g *genRequest, user string) {
	pipeline := numberAfter(user, "pipelines/")
	out, ok := p.must(failingJobsTool, map[string]any{"pipeline_id": pipeline})
	if !ok {
		return
	}
	var jobs []struct {
		ID     int    `json:"id"`
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal([]byte(out), &jobs)
	job := -1
	for i := range jobs {
		if jobs[i].ID > 0 && (job < 0 || jobs[i].Status == "failed" && jobs[job].Status != "failed") {
			job = i
		}
	}
	if job < 0 {
		p.finish(fmt.Sprintf("pipeline %d lists no failed job to read.", pipeline))
		return
	}
	j := jobs[job]
	log, ok := p.must(jobLogTool, map[string]any{"job_id": j.ID})
	if !ok {
		return
	}
	what := errorLine(log)
	path, line := faultRef(log)
	if path == "" {
		p.finish(fmt.Sprintf("job `%s` (%d) of pipeline %d failed: %s; its log names no file:line.", j.Name, j.ID, pipeline, what))
		return
	}
	quoted := ""
	reader := readTool
	if !hasTool(g, reader) {
		reader = repoFileTool
	}
	if hasTool(g, reader) {
		content, ok := p.do(reader, map[string]any{"file_path": path})
		if !ok {
			return
		}
		if ls := strings.Split(content, "\n"); !failed(content) && line <= len(ls) {
			quoted = fmt.Sprintf(" (`%s`)", oneLine(strings.ReplaceAll(ls[line-1], "`", "'"), 100))
		}
	}
	p.finish(fmt.Sprintf("job `%s` (%d) of pipeline %d failed: %s. At fault: %s:%d%s, the last non-test location in the log. "+
		"A model would propose the fix; this stand-in only marks the line.", j.Name, j.ID, pipeline, what, path, line, quoted))
}

func fixPlan(p *plan, user, system string) {
	goal, diagnosis, _ := strings.Cut(user, "Diagnosis:")
	goal = strings.TrimSpace(strings.TrimPrefix(goal, "Pipeline:"))
	path, line := "", 0
	if m := atFaultRe.FindStringSubmatch(diagnosis); m != nil {
		path, line = m[1], atoi(m[2])
	} else {
		path, line = faultRef(diagnosis)
	}
	if path == "" || commentSyntax(path) == nil {
		p.finish("the diagnosis names no file:line this stand-in can mark; nothing was changed.")
		return
	}
	branch := branchFor(system, goal)
	if _, ok := p.must(gitTool, map[string]any{"command": "checkout", "args": "-b " + shQuote(branch)}); !ok {
		return
	}
	content, ok := p.must(readTool, map[string]any{"file_path": path})
	if !ok {
		return
	}
	note := fmt.Sprintf("%s: the failed pipeline's log points at this line; a model would fix it here.", standIn)
	if _, ok := p.must(editTool, annotate(path, content, line, note)); !ok {
		return
	}
	if !commitAndPush(p, branch, fmt.Sprintf("Sandbox stand-in: mark %s:%d named by the failed pipeline", path, line), path) {
		return
	}
	p.finish(fmt.Sprintf("pushed branch `%s` with a labelled note above %s:%d, the line the failed job's log points at; nothing was fixed.", branch, path, line))
}

func convertPlan(p *plan, user, system string) {
	goal := strings.TrimSpace(strings.TrimPrefix(user, "Convert:"))
	src := namedPath(goal, nil)
	if src == "" {
		src = "Jenkinsfile"
		if f := strings.Fields(goal); len(f) > 0 && isPathLike(f[0]) {
			src = f[0]
		}
	}
	content, ok := p.must(readTool, map[string]any{"file_path": src})
	if !ok {
		return
	}
	branch := branchFor(system, goal)
	if _, ok := p.must(gitTool, map[string]any{"command": "checkout", "args": "-b " + shQuote(branch)}); !ok {
		return
	}
	ci, jobs := jenkinsToGitLabCI(src, content)
	if _, ok := p.must(writeTool, map[string]any{"file_path": ciFile, "contents": ci}); !ok {
		return
	}
	if !commitAndPush(p, branch, "Sandbox stand-in: "+ciFile+" from "+src, ciFile) {
		return
	}
	p.finish(fmt.Sprintf("pushed branch `%s` with %s: %d job(s) copied from the stages and sh steps of %s (a mechanical translation, not a model's).", branch, ciFile, jobs, src))
}

// mergeRequestCall opens the merge request for the branch the work
// summary names.
func mergeRequestCall(users []string) *toolCall {
	text := strings.Join(users, "\n")
	goal, summary, _ := strings.Cut(text, workSummary)
	goal = oneLine(strings.TrimPrefix(strings.TrimSpace(goal), "Goal:"), 200)
	branch := ""
	if m := summaryBranch.FindStringSubmatch(summary); m != nil {
		branch = m[1]
	} else if m := duoBranchRe.FindString(text); m != "" {
		branch = m
	}
	args, _ := json.Marshal(map[string]string{
		"source_branch": branch,
		"title":         head("Sandbox stand-in: "+goal, 70),
		"description":   standIn + ". Goal: " + goal + "\n\nWork summary:\n" + head(strings.TrimSpace(summary), 2000),
	})
	return newCall(mergeTool, string(args), 0)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// oneLine is s on one line, cut to n characters.
func oneLine(s string, n int) string {
	return head(strings.Join(strings.Fields(s), " "), n)
}
