package build_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's install commands are the documented ones the repository
// tests run: its first shell block is docs/operations.md's apt block, its
// second the dnf block, and the first command after adding the repository
// is apt install duo-confidential.
func TestReadmeInstallIsTheTestedOne(t *testing.T) {
	readme := repoFile(t, "README.md")
	i := strings.Index(readme, "\n## Install\n")
	if i < 0 {
		t.Fatal("README.md has no Install section")
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```\n").FindAllStringSubmatch(readme[i:], 2)
	if len(blocks) < 2 {
		t.Fatal("README.md's Install section has fewer than two shell blocks")
	}
	for n, name := range []string{"apt-add", "dnf-add"} {
		if got, want := blocks[n][1], docBlock(t, name); got != want {
			t.Errorf("README install block %d differs from docs/operations.md's %q block:\n%s\nwant:\n%s", n+1, name, got, want)
		}
	}
	lines := strings.Split(strings.TrimSpace(blocks[0][1]), "\n")
	if last := lines[len(lines)-1]; last != "sudo apt install duo-confidential" {
		t.Errorf("README's first install command is %q, want sudo apt install duo-confidential", last)
	}
}

// Every block docs/operations.md marks for CI is run by a test here (named
// in a test file), so a marked block cannot silently go untested.
func TestEveryMarkedDocBlockIsRun(t *testing.T) {
	doc := repoFile(t, "docs/operations.md")
	names := regexp.MustCompile(`<!-- ci: ([a-z-]+) -->`).FindAllStringSubmatch(doc, -1)
	if len(names) == 0 {
		t.Fatal("docs/operations.md marks no blocks")
	}
	tests, err := filepath.Glob("repo_*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range tests {
		if f == "repo_docs_test.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	for _, m := range names {
		if !strings.Contains(src.String(), `"`+m[1]+`"`) {
			t.Errorf("docs block %q is marked for CI but no test runs it", m[1])
		}
	}
}
