package repo_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/packaging/repo"
)

// Build never replaces a directory that is not an earlier publication, and
// refuses inputs it cannot publish, before it signs anything.
func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "dist")
	if err := os.MkdirAll(precious, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(precious, "keep.deb"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    repo.Options
		want string
	}{
		{"not a repository", repo.Options{Packages: []string{filepath.Join(precious, "keep.deb")}, OutDir: precious, URL: "https://x"}, "refusing to replace"},
		{"no URL", repo.Options{Packages: []string{"a.deb"}, OutDir: filepath.Join(dir, "o")}, "URL"},
		{"no packages", repo.Options{OutDir: filepath.Join(dir, "o"), URL: "https://x"}, "no packages"},
		{"not a package", repo.Options{Packages: []string{"a.tar"}, OutDir: filepath.Join(dir, "o"), URL: "https://x"}, "neither"},
		{"same name twice", repo.Options{Packages: []string{"a/x.deb", "b/x.deb"}, OutDir: filepath.Join(dir, "o"), URL: "https://x"}, "two packages"},
		{"relative offline dir", repo.Options{Packages: []string{"a.deb"}, OutDir: filepath.Join(dir, "o"), URL: "https://x", OfflineDir: "srv"}, "not absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := repo.Build(context.Background(), nil, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(precious, "keep.deb")); err != nil {
		t.Errorf("the refused output directory lost its file: %v", err)
	}
}
