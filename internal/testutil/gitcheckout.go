package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// GitEnv is a git identity and an empty global config for commands a test
// runs (a checkout's commits, an executor's git actions), so the
// developer's own git configuration never leaks in.
var GitEnv = []string{"GIT_AUTHOR_NAME=Duo", "GIT_AUTHOR_EMAIL=duo@example.com", "GIT_COMMITTER_NAME=Duo",
	"GIT_COMMITTER_EMAIL=duo@example.com", "GIT_CONFIG_GLOBAL=/dev/null"}

// GitCheckout makes a git checkout (branch main) of files with a bare
// origin it was pushed to, as a CI job's executor sees a project; it skips
// the test when git is not installed.
func GitCheckout(t testing.TB, files map[string]string) (dir, origin string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	base := t.TempDir()
	dir, origin = filepath.Join(base, "checkout"), filepath.Join(base, "origin.git")
	git := func(d string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), GitEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(base, "init", "-q", "--bare", "-b", "main", origin)
	git(dir, "init", "-q", "-b", "main")
	git(dir, "add", ".")
	git(dir, "commit", "-q", "-m", "init")
	git(dir, "remote", "add", "origin", origin)
	git(dir, "push", "-q", "origin", "main")
	return dir, origin
}

// GitShow returns file as committed on branch of the repository at
// gitDir (a bare origin).
func GitShow(t testing.TB, gitDir, branch, file string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", gitDir, "show", branch+":"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("git show %s:%s: %v\n%s", branch, file, err, out)
	}
	return string(out)
}
