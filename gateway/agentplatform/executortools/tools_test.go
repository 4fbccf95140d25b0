package executortools_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools/localexec"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// execSession sends every action to a local executor.
type execSession struct {
	ex      *localexec.Executor
	actions []*contract.Action
}

func (s *execSession) Start() *contract.StartWorkflowRequest { return &contract.StartWorkflowRequest{} }
func (s *execSession) Caller() flow.Caller                   { return flow.Caller{} }
func (s *execSession) Notify(context.Context, *contract.NewCheckpoint) error {
	return nil
}
func (s *execSession) Do(ctx context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	s.actions = append(s.actions, a)
	return s.ex.Execute(ctx, a), nil
}

// TestToolsAgainstLocalExecutor: every executor tool, called as a model
// would, does its job in a real git checkout; errors come back as tool
// errors with the executor's text.
func TestToolsAgainstLocalExecutor(t *testing.T) {
	dir, origin := testutil.GitCheckout(t, map[string]string{"main.go": "package main\n\nfunc main() {\n\tprintln(\"hi\")\n}\n"})
	s := &execSession{ex: &localexec.Executor{Dir: dir, Env: testutil.GitEnv}}
	env := &flowtools.Env{Session: s}
	cat := flowtools.Merge(executortools.Tools())
	call := func(name string, args map[string]any) (string, error) {
		t.Helper()
		return cat[name].Run(context.Background(), env, args)
	}
	steps := []struct {
		tool string
		args map[string]any
		want string
		err  string
	}{
		{"read_file", map[string]any{"file_path": "main.go"}, "println(\"hi\")", ""},
		{"read_file", map[string]any{"file_path": "../etc/passwd"}, "", "stay inside"},
		{"read_file", map[string]any{"file_path": "missing.go"}, "", "the executor reported"},
		{"run_git_command", map[string]any{"command": "checkout", "args": "-b duo/workflow-7"}, "", ""},
		{"edit_file", map[string]any{"file_path": "main.go", "old_str": "\"hi\"", "new_str": "\"hello\""}, "Edited main.go", ""},
		{"edit_file", map[string]any{"file_path": "main.go", "old_str": "nope", "new_str": "x"}, "", "was not found"},
		{"mkdir", map[string]any{"directory_path": "docs/notes"}, "Created", ""},
		{"create_file_with_contents", map[string]any{"file_path": "docs/notes/a.md", "contents": "# A\nhello world\n"}, "Wrote", ""},
		{"list_dir", map[string]any{"directory": "."}, "docs/\nmain.go\n", ""},
		{"find_files", map[string]any{"name_pattern": "*.md"}, "docs/notes/a.md", ""},
		{"grep", map[string]any{"pattern": "HELLO", "case_insensitive": true}, "docs/notes/a.md:2:hello world", ""},
		{"read_files", map[string]any{"file_paths": []any{"main.go", "docs/notes/a.md"}}, "=== docs/notes/a.md ===", ""},
		{"run_command", map[string]any{"program": "ls", "args": []any{"docs/notes"}}, "a.md", ""},
		{"run_command", map[string]any{"program": "ls && rm -rf /"}, "", "shell operator"},
		{"run_command", map[string]any{"program": "bash", "args": []any{"-c", "id"}}, "", "cannot run through run_command"},
		{"run_command", map[string]any{"program": "false"}, "", "exit status 1"},
		{"run_git_command", map[string]any{"command": "add", "args": "-A"}, "", ""},
		{"run_git_command", map[string]any{"command": "commit", "args": "-m 'Say hello'"}, "Say hello", ""},
		{"run_git_command", map[string]any{"command": "git push -u origin duo/workflow-7"}, "", ""},
	}
	for _, st := range steps {
		out, err := call(st.tool, st.args)
		if st.err != "" {
			if err == nil || !strings.Contains(err.Error(), st.err) {
				t.Fatalf("%s %v: err %v, want %q", st.tool, st.args, err, st.err)
			}
			continue
		}
		if err != nil || !strings.Contains(out, st.want) {
			t.Fatalf("%s %v: %q %v, want %q", st.tool, st.args, out, err, st.want)
		}
	}
	out, err := exec.Command("git", "--git-dir", origin, "show", "duo/workflow-7:main.go").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello") {
		t.Fatalf("pushed branch: %s %v", out, err)
	}
	if g := s.actions[len(s.actions)-1].GetRunGitCommand(); g.GetCommand() != "push" || g.GetArguments() != "-u origin duo/workflow-7" {
		t.Fatalf("git action %v", g)
	}
}

func TestPrivilegesAndApproval(t *testing.T) {
	cat := flowtools.Merge(executortools.Tools())
	tools, dropped := cat.Select([]string{"read_file", "run_command", "run_git_command", "edit_file", "nope"}, []string{flowtools.ReadWriteFiles})
	var names []string
	for _, tl := range tools {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != "read_file,edit_file" || strings.Join(dropped, ",") != "run_command,run_git_command,nope" {
		t.Fatalf("%v %v", names, dropped)
	}
	if !flowtools.PreApproved(cat["read_file"], nil, nil) || flowtools.PreApproved(cat["edit_file"], nil, nil) ||
		!flowtools.PreApproved(cat["edit_file"], []string{flowtools.ReadWriteFiles}, nil) || !flowtools.PreApproved(cat["run_command"], nil, []string{"run_command"}) {
		t.Fatal("pre-approval rules")
	}
}

func TestTruncateAndSplit(t *testing.T) {
	long := strings.Repeat("é", 20)
	got := flowtools.Truncate(long, 11)
	if !strings.HasPrefix(got, strings.Repeat("é", 5)+"\n[output truncated: 10 of 40 bytes") {
		t.Fatalf("%q", got)
	}
	if flowtools.Truncate("short", 10) != "short" {
		t.Fatal("short text changed")
	}
	for in, want := range map[string]string{
		`-m 'two words' "a \"b\"" c\ d`: "-m|two words|a \"b\"|c d",
		"":                              "",
	} {
		parts, err := executortools.SplitArgs(in)
		if err != nil || strings.Join(parts, "|") != want {
			t.Errorf("%q: %q %v", in, parts, err)
		}
	}
	if _, err := executortools.SplitArgs(`-m 'open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestAnswerShapes(t *testing.T) {
	if _, err := executortools.Answer(&contract.ActionResponse{}); err == nil {
		t.Fatal("empty answer accepted")
	}
	out, err := executortools.Answer(&contract.ActionResponse{ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{Body: "b"}}})
	if err != nil || out != "b" {
		t.Fatal(out, err)
	}
	_, err = executortools.Answer(&contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Error: "exit 2", Response: "FAIL x_test.go"}}})
	if err == nil || !strings.Contains(err.Error(), "exit 2") || !strings.Contains(err.Error(), "FAIL x_test.go") {
		t.Fatal(err)
	}
}
