package build_test

import (
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
