package localexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools"
)

// Limits of the executor.
const (
	maxOutput   = 256 << 10
	maxReadSize = 1 << 20
	maxMatches  = 200
)

// Executor runs actions in Dir.
type Executor struct {
	// Dir is the workspace (a git checkout).
	Dir string
	// Timeout bounds each command (default 2 minutes).
	Timeout time.Duration
	// Env is added to commands' environment (e.g. git identity).
	Env []string
}

func plain(out string, err error) *contract.ActionResponse {
	p := &contract.PlainTextResponse{Response: out}
	if err != nil {
		p.Error = err.Error()
	}
	return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: p}}
}

// Handles reports whether a is an action this executor answers.
func Handles(a *contract.Action) bool {
	switch a.Action.(type) {
	case *contract.Action_RunReadFile, *contract.Action_RunReadFiles, *contract.Action_RunWriteFile, *contract.Action_RunEditFile,
		*contract.Action_ListDirectory, *contract.Action_FindFiles, *contract.Action_Grep, *contract.Action_Mkdir,
		*contract.Action_RunCommand, *contract.Action_RunGitCommand:
		return true
	}
	return false
}

// Execute answers one action.
func (e *Executor) Execute(ctx context.Context, a *contract.Action) *contract.ActionResponse {
	root, err := os.OpenRoot(e.Dir)
	if err != nil {
		return plain("", fmt.Errorf("workspace: %w", err))
	}
	defer root.Close()
	switch x := a.Action.(type) {
	case *contract.Action_RunReadFile:
		return plain(readFile(root, x.RunReadFile.GetFilepath()))
	case *contract.Action_RunReadFiles:
		var b strings.Builder
		for _, p := range x.RunReadFiles.GetFilepaths() {
			s, err := readFile(root, p)
			if err != nil {
				s = "Error: " + err.Error()
			}
			fmt.Fprintf(&b, "=== %s ===\n%s\n", p, s)
		}
		return plain(b.String(), nil)
	case *contract.Action_RunWriteFile:
		w := x.RunWriteFile
		if dir := path.Dir(clean(w.GetFilepath())); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return plain("", err)
			}
		}
		if err := root.WriteFile(clean(w.GetFilepath()), []byte(w.GetContents()), 0o644); err != nil {
			return plain("", err)
		}
		return plain("Wrote "+w.GetFilepath(), nil)
	case *contract.Action_RunEditFile:
		return plain(editFile(root, x.RunEditFile))
	case *contract.Action_ListDirectory:
		return plain(listDir(root, x.ListDirectory.GetDirectory()))
	case *contract.Action_FindFiles:
		return plain(e.findFiles(root, x.FindFiles.GetNamePattern()))
	case *contract.Action_Grep:
		return plain(grep(root, x.Grep))
	case *contract.Action_Mkdir:
		if err := root.MkdirAll(clean(x.Mkdir.GetDirectoryPath()), 0o755); err != nil {
			return plain("", err)
		}
		return plain("Created "+x.Mkdir.GetDirectoryPath(), nil)
	case *contract.Action_RunCommand:
		c := x.RunCommand
		return plain(e.run(ctx, c.GetProgram(), append(append([]string{}, c.GetFlags()...), c.GetArguments()...)))
	case *contract.Action_RunGitCommand:
		g := x.RunGitCommand
		args, err := executortools.SplitArgs(g.GetArguments())
		if err != nil {
			return plain("", err)
		}
		return plain(e.run(ctx, "git", append([]string{g.GetCommand()}, args...)))
	}
	return plain("", errors.New("this executor does not run that action"))
}

func clean(p string) string {
	c := path.Clean(strings.TrimPrefix(filepath.ToSlash(p), "./"))
	if c == "" {
		return "."
	}
	return c
}

func readFile(root *os.Root, p string) (string, error) {
	f, err := root.Open(clean(p))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReadSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxReadSize {
		return string(b[:maxReadSize]) + "\n[file truncated at 1 MiB]", nil
	}
	return string(b), nil
}

func editFile(root *os.Root, e *contract.EditFile) (string, error) {
	s, err := readFile(root, e.GetFilepath())
	if err != nil {
		return "", err
	}
	switch n := strings.Count(s, e.GetOldString()); {
	case e.GetOldString() == "":
		return "", errors.New("old_str is empty")
	case n == 0:
		return "", fmt.Errorf("old_str was not found in %s; read the file and copy the text exactly", e.GetFilepath())
	case n > 1:
		return "", fmt.Errorf("old_str occurs %d times in %s; include more surrounding text so it is unique", n, e.GetFilepath())
	}
	out := strings.Replace(s, e.GetOldString(), e.GetNewString(), 1)
	if err := root.WriteFile(clean(e.GetFilepath()), []byte(out), 0o644); err != nil {
		return "", err
	}
	return "Edited " + e.GetFilepath(), nil
}

func listDir(root *os.Root, dir string) (string, error) {
	entries, err := fs.ReadDir(root.FS(), clean(dir))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, en := range entries {
		if en.Name() == ".git" {
			continue
		}
		name := en.Name()
		if en.IsDir() {
			name += "/"
		}
		b.WriteString(name + "\n")
	}
	return b.String(), nil
}

func (e *Executor) findFiles(root *os.Root, pattern string) (string, error) {
	var hits []string
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == ".git" {
			return fs.SkipDir
		}
		if d.IsDir() || len(hits) >= maxMatches {
			return nil
		}
		if ok, _ := path.Match(pattern, p); ok {
			hits = append(hits, p)
		} else if ok, _ := path.Match(pattern, path.Base(p)); ok {
			hits = append(hits, p)
		}
		return nil
	})
	sort.Strings(hits)
	return strings.Join(hits, "\n"), err
}

func grep(root *os.Root, g *contract.Grep) (string, error) {
	expr := g.GetPattern()
	if g.GetCaseInsensitive() {
		expr = "(?i)" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		re = regexp.MustCompile(regexp.QuoteMeta(g.GetPattern()))
	}
	dir := clean(g.GetSearchDirectory())
	var b strings.Builder
	n := 0
	err = fs.WalkDir(root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || n >= maxMatches {
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return fs.SkipDir
			}
			return nil
		}
		data, err := fs.ReadFile(root.FS(), p)
		if err != nil || bytes.IndexByte(data, 0) >= 0 {
			return nil
		}
		for i, line := range strings.Split(string(data), "\n") {
			if re.MatchString(line) && n < maxMatches {
				fmt.Fprintf(&b, "%s:%d:%s\n", p, i+1, line)
				n++
			}
		}
		return nil
	})
	return b.String(), err
}

func (e *Executor) run(ctx context.Context, prog string, args []string) (string, error) {
	t := e.Timeout
	if t <= 0 {
		t = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = e.Dir
	cmd.Env = append(os.Environ(), e.Env...)
	var out bytes.Buffer
	cmd.Stdout = &limited{w: &out, n: maxOutput}
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// limited writes at most n bytes, dropping the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	_, err := l.w.Write(q)
	return len(p), err
}
