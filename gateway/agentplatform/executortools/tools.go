package executortools

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
)

// Limits on what the model may ask of the executor.
const (
	maxReadFiles  = 20
	maxArgs       = 64
	maxArgBytes   = 4096
	maxWriteBytes = 1 << 20
)

// Answer reads an executor's textual answer (some executors answer with an
// HTTP response instead). An executor-reported error becomes a tool error
// whose text (with any command output) goes back to the model.
func Answer(r *contract.ActionResponse) (string, error) {
	if p := r.GetPlainTextResponse(); p != nil {
		if p.GetError() != "" {
			msg := "the executor reported: " + flowtools.Truncate(p.GetError(), 4096)
			if out := p.GetResponse(); out != "" {
				msg += "\noutput:\n" + flowtools.Truncate(out, flowtools.MaxResultBytes)
			}
			return "", fmt.Errorf("%s", msg)
		}
		return flowtools.Truncate(p.GetResponse(), flowtools.MaxResultBytes), nil
	}
	if h := r.GetHttpResponse(); h != nil {
		if h.GetError() != "" {
			return "", fmt.Errorf("the executor reported: %s", flowtools.Truncate(h.GetError(), 4096))
		}
		return flowtools.Truncate(h.GetBody(), flowtools.MaxResultBytes), nil
	}
	return "", fmt.Errorf("the executor answered with nothing")
}

// action builds a tool that sends one executor action.
func action(name, desc, priv string, write bool, params map[string]any, build func(a map[string]any) (*contract.Action, error)) *flowtools.Tool {
	return &flowtools.Tool{
		Name: name, Description: desc, Privilege: priv, Write: write, Params: params,
		Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
			a, err := build(args)
			if err != nil {
				return "", err
			}
			r, err := env.Session.Do(ctx, a)
			if err != nil {
				return "", err
			}
			return Answer(r)
		},
	}
}

// relPath accepts a workspace-relative path; the executor enforces its own
// root, this only refuses the obvious escapes early with a clear text.
func relPath(args map[string]any, name string, required bool) (string, error) {
	p, err := flowtools.String(args, name, required)
	if err != nil || p == "" {
		return p, err
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: %s must be relative to the workspace and stay inside it", flowtools.ErrBadArgs, name)
	}
	return clean, nil
}

var (
	pFile = [3]string{"file_path", "string", "Path relative to the repository root."}
)

// Tools returns every executor tool.
func Tools() []*flowtools.Tool {
	return []*flowtools.Tool{
		action("read_file", "Read a file of the repository checkout.", flowtools.ReadWriteFiles, false,
			flowtools.Schema([]string{"file_path"}, pFile), func(a map[string]any) (*contract.Action, error) {
				p, err := relPath(a, "file_path", true)
				return &contract.Action{Action: &contract.Action_RunReadFile{RunReadFile: &contract.ReadFile{Filepath: p}}}, err
			}),
		action("read_files", "Read several files of the repository checkout at once.", flowtools.ReadWriteFiles, false,
			flowtools.Schema([]string{"file_paths"}, [3]string{"file_paths", "array", "Paths relative to the repository root."}),
			func(a map[string]any) (*contract.Action, error) {
				ps, err := flowtools.Strings(a, "file_paths")
				if err != nil {
					return nil, err
				}
				if len(ps) == 0 || len(ps) > maxReadFiles {
					return nil, fmt.Errorf("%w: file_paths must list 1 to %d paths", flowtools.ErrBadArgs, maxReadFiles)
				}
				for i, p := range ps {
					c, err := relPath(map[string]any{"file_paths": p}, "file_paths", true)
					if err != nil {
						return nil, err
					}
					ps[i] = c
				}
				return &contract.Action{Action: &contract.Action_RunReadFiles{RunReadFiles: &contract.ReadFiles{Filepaths: ps}}}, nil
			}),
		action("create_file_with_contents", "Create a file (or replace it) with the given contents.", flowtools.ReadWriteFiles, true,
			flowtools.Schema([]string{"file_path", "contents"}, pFile, [3]string{"contents", "string", "The whole content of the file."}),
			func(a map[string]any) (*contract.Action, error) {
				p, err := relPath(a, "file_path", true)
				if err != nil {
					return nil, err
				}
				c, err := flowtools.String(a, "contents", false)
				if err == nil && len(c) > maxWriteBytes {
					err = fmt.Errorf("%w: contents is larger than %d bytes", flowtools.ErrBadArgs, maxWriteBytes)
				}
				return &contract.Action{Action: &contract.Action_RunWriteFile{RunWriteFile: &contract.WriteFile{Filepath: p, Contents: c}}}, err
			}),
		action("edit_file", "Replace one exact occurrence of old_str with new_str in a file.", flowtools.ReadWriteFiles, true,
			flowtools.Schema([]string{"file_path", "old_str", "new_str"}, pFile,
				[3]string{"old_str", "string", "The exact text to replace; it must occur once."},
				[3]string{"new_str", "string", "The replacement text."}),
			func(a map[string]any) (*contract.Action, error) {
				p, err := relPath(a, "file_path", true)
				if err != nil {
					return nil, err
				}
				o, err := flowtools.String(a, "old_str", true)
				if err != nil {
					return nil, err
				}
				n, err := flowtools.String(a, "new_str", false)
				return &contract.Action{Action: &contract.Action_RunEditFile{RunEditFile: &contract.EditFile{Filepath: p, OldString: o, NewString: n}}}, err
			}),
		action("list_dir", "List the entries of a directory of the repository checkout.", flowtools.ReadWriteFiles, false,
			flowtools.Schema([]string{"directory"}, [3]string{"directory", "string", "Directory relative to the repository root (\".\" for the root)."}),
			func(a map[string]any) (*contract.Action, error) {
				d, err := relPath(a, "directory", true)
				return &contract.Action{Action: &contract.Action_ListDirectory{ListDirectory: &contract.ListDirectory{Directory: d}}}, err
			}),
		action("find_files", "Find files by a name pattern (glob, e.g. *.go or src/**/*.ts).", flowtools.ReadWriteFiles, false,
			flowtools.Schema([]string{"name_pattern"}, [3]string{"name_pattern", "string", "Glob matched against paths."}),
			func(a map[string]any) (*contract.Action, error) {
				p, err := flowtools.String(a, "name_pattern", true)
				return &contract.Action{Action: &contract.Action_FindFiles{FindFiles: &contract.FindFiles{NamePattern: p}}}, err
			}),
		action("grep", "Search the files of a directory for a text pattern.", flowtools.ReadWriteFiles, false,
			flowtools.Schema([]string{"pattern"}, [3]string{"pattern", "string", "Text or regular expression."},
				[3]string{"search_directory", "string", "Directory to search (default: the root)."},
				[3]string{"case_insensitive", "boolean", "Ignore case."}),
			func(a map[string]any) (*contract.Action, error) {
				p, err := flowtools.String(a, "pattern", true)
				if err != nil {
					return nil, err
				}
				d, err := relPath(a, "search_directory", false)
				ci, _ := a["case_insensitive"].(bool)
				return &contract.Action{Action: &contract.Action_Grep{Grep: &contract.Grep{Pattern: p, SearchDirectory: d, CaseInsensitive: ci}}}, err
			}),
		action("mkdir", "Create a directory (and its parents).", flowtools.ReadWriteFiles, true,
			flowtools.Schema([]string{"directory_path"}, [3]string{"directory_path", "string", "Directory relative to the repository root."}),
			func(a map[string]any) (*contract.Action, error) {
				d, err := relPath(a, "directory_path", true)
				return &contract.Action{Action: &contract.Action_Mkdir{Mkdir: &contract.Mkdir{DirectoryPath: d}}}, err
			}),
		action("run_command", "Run a program with arguments in the repository checkout (no shell: pipes, redirects and && do not work).", flowtools.RunCommands, true,
			flowtools.Schema([]string{"program"}, [3]string{"program", "string", "The program, e.g. go or npm."},
				[3]string{"args", "string", "All arguments and flags as one string, quoted as in a shell, e.g. \"test ./...\"."}),
			buildRunCommand),
		action("run_git_command", "Run a git subcommand in the repository checkout (e.g. status, diff, checkout, add, commit, push).", flowtools.UseGit, true,
			flowtools.Schema([]string{"command"}, [3]string{"command", "string", "The git subcommand, e.g. commit."},
				[3]string{"args", "string", "The subcommand's arguments as one string (quoted as in a shell)."},
				[3]string{"repository_url", "string", "The repository's URL (default: the project's)."}),
			buildGitCommand),
	}
}

// refusedPrograms must not run through run_command: shells would undo the
// no-shell rule, git has its own tool and privilege.
var refusedPrograms = []string{"sh", "bash", "zsh", "dash", "fish", "git", "sudo", "su", "eval", "exec"}

// shellOperators are refused in arguments as GitLab's service does: there
// is no shell, so they would not do what the model expects.
var shellOperators = []string{"&&", "||", ";", "|", ">", "<", "`", "$("}

func buildRunCommand(a map[string]any) (*contract.Action, error) {
	prog, err := flowtools.String(a, "program", true)
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(prog)
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: program is empty", flowtools.ErrBadArgs)
	}
	var args []string
	if s, ok := a["args"].(string); ok {
		if args, err = SplitArgs(s); err != nil {
			return nil, err
		}
	} else if args, err = flowtools.Strings(a, "args"); err != nil {
		return nil, err
	}
	// A model often writes "go test ./..." into program.
	prog, args = fields[0], append(fields[1:], args...)
	if isRefused(path.Base(prog)) {
		return nil, fmt.Errorf("%w: %s cannot run through run_command", flowtools.ErrBadArgs, prog)
	}
	if len(args) > maxArgs {
		return nil, fmt.Errorf("%w: at most %d arguments", flowtools.ErrBadArgs, maxArgs)
	}
	for _, x := range append([]string{prog}, args...) {
		if len(x) > maxArgBytes {
			return nil, fmt.Errorf("%w: an argument is longer than %d bytes", flowtools.ErrBadArgs, maxArgBytes)
		}
		for _, op := range shellOperators {
			if strings.Contains(x, op) {
				return nil, fmt.Errorf("%w: %q is a shell operator and there is no shell; run one program per call", flowtools.ErrBadArgs, op)
			}
		}
	}
	return &contract.Action{Action: &contract.Action_RunCommand{RunCommand: &contract.RunCommandAction{Program: prog, Arguments: args}}}, nil
}

func isRefused(p string) bool {
	for _, r := range refusedPrograms {
		if p == r {
			return true
		}
	}
	return false
}

func buildGitCommand(a map[string]any) (*contract.Action, error) {
	cmd, err := flowtools.String(a, "command", true)
	if err != nil {
		return nil, err
	}
	cmd = strings.TrimPrefix(strings.TrimSpace(cmd), "git ")
	if strings.ContainsAny(cmd, " \t") {
		f := strings.Fields(cmd)
		cmd = f[0]
		rest, _ := flowtools.String(a, "args", false)
		a = map[string]any{"args": strings.TrimSpace(strings.Join(f[1:], " ") + " " + rest)}
	}
	args, err := flowtools.String(a, "args", false)
	if err != nil {
		return nil, err
	}
	if _, err := SplitArgs(args); err != nil {
		return nil, err
	}
	repo, _ := flowtools.String(a, "repository_url", false)
	g := &contract.RunGitCommand{Command: cmd, RepositoryUrl: repo}
	if args != "" {
		g.Arguments = &args
	}
	return &contract.Action{Action: &contract.Action_RunGitCommand{RunGitCommand: g}}, nil
}

// SplitArgs splits a command line as a POSIX shell would for words (single
// and double quotes, backslash escapes) without any expansion.
func SplitArgs(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated single quote", flowtools.ErrBadArgs)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("%w: unterminated double quote", flowtools.ErrBadArgs)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}
