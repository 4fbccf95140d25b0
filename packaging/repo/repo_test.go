package repo_test

import (
	"context"
	"os"
	"os/exec"
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

// fakeDeb builds a minimal .deb for arch with dpkg-deb, named as nfpm
// names ours.
func fakeDeb(t *testing.T, dir, version, arch string) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	src := filepath.Join(t.TempDir(), "pkg")
	if err := os.MkdirAll(filepath.Join(src, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	control := "Package: duo-confidential\nVersion: " + version + "\nArchitecture: " + arch +
		"\nMaintainer: test <test@duo-confidential.invalid>\nDescription: test\n"
	if err := os.WriteFile(filepath.Join(src, "DEBIAN/control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "duo-confidential_"+version+"_"+arch+".deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", src, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

// Each architecture's index lists exactly its packages, and Release covers
// every index of both architectures.
func TestArchIndexes(t *testing.T) {
	for _, tool := range []string{"apt-ftparchive", "createrepo_c", "rpmsign"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := context.Background()
	t.Setenv(repo.EnvKey, genKey(t, "arch", ""))
	t.Setenv(repo.EnvPassphrase, "")
	s, err := repo.LoadKey(ctx, repo.KeySource{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := t.TempDir()
	pkgs := []string{fakeDeb(t, in, "1.2.2-1", "amd64"), fakeDeb(t, in, "1.2.2-1", "arm64"), fakeDeb(t, in, "1.2.3-1", "arm64")}
	out := filepath.Join(t.TempDir(), "repo")
	if err := repo.Build(ctx, s, repo.Options{Packages: pkgs, OutDir: out, URL: "https://x"}); err != nil {
		t.Fatal(err)
	}
	index := func(arch string) string {
		b, err := os.ReadFile(filepath.Join(out, "apt/dists/stable/main/binary-"+arch+"/Packages"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	amd, arm := index("amd64"), index("arm64")
	if strings.Count(amd, "Package: ") != 1 || !strings.Contains(amd, "_1.2.2-1_amd64.deb") || strings.Contains(amd, "arm64") {
		t.Errorf("amd64 index:\n%s", amd)
	}
	if strings.Count(arm, "Package: ") != 2 || !strings.Contains(arm, "_1.2.3-1_arm64.deb") || strings.Contains(arm, "amd64") {
		t.Errorf("arm64 index:\n%s", arm)
	}
	rel, err := os.ReadFile(filepath.Join(out, "apt/dists/stable/Release"))
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range repo.AptArches {
		for _, ext := range []string{"", ".gz", ".xz"} {
			if !strings.Contains(string(rel), " main/binary-"+arch+"/Packages"+ext+"\n") {
				t.Errorf("Release does not cover main/binary-%s/Packages%s", arch, ext)
			}
		}
	}
	if !strings.Contains(string(rel), "Architectures: amd64 arm64\n") {
		t.Errorf("Release:\n%s", rel)
	}
	if strings.Contains(string(rel), "MD5Sum:") || strings.Contains(string(rel), "SHA1:") {
		t.Error("Release carries MD5 or SHA1 hashes")
	}
}
