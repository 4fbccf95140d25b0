package build_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The build-repo command, built and run as a release job would: the key
// from DUO_RELEASE_KEY, the date from SOURCE_DATE_EPOCH; without a key it
// fails and says how to give one.
func TestBuildRepoCommand(t *testing.T) {
	b := packages(t)
	key, _ := releaseKeys(t)
	s := signer(t, key)
	dir := t.TempDir()
	bin := filepath.Join(dir, "build-repo")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/build-repo")
	cmd.Dir = filepath.Join(b.repo, "packaging")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "repo")
	bundle := filepath.Join(dir, "bundle.tar")
	args := []string{"-url", docURL, "-out", out, "-bundle", bundle, b.v1["deb"], b.v1["rpm"]}

	run := func(env ...string) (string, error) {
		c := exec.Command(bin, args...)
		c.Dir = dir
		c.Env = append(os.Environ(), env...)
		o, err := c.CombinedOutput()
		return string(o), err
	}
	got, err := run("DUO_RELEASE_KEY=", "DUO_RELEASE_KEY_PASSPHRASE=")
	if err == nil || !strings.Contains(got, "no release key: pass -key-file or set DUO_RELEASE_KEY") {
		t.Errorf("without a key: %v\n%s", err, got)
	}
	got, err = run("DUO_RELEASE_KEY="+readFile(t, key), "SOURCE_DATE_EPOCH=1767323045")
	if err != nil {
		t.Fatalf("build-repo: %v\n%s", err, got)
	}
	if !strings.Contains(got, "key\t"+s.Fingerprint()) || !strings.Contains(got, "bundle\t"+bundle) {
		t.Errorf("output:\n%s", got)
	}
	if rel := readFile(t, filepath.Join(out, "apt/dists/stable/Release")); !strings.Contains(rel, "Date: Fri, 02 Jan 2026 03:04:05 +0000\n") {
		t.Errorf("Release not dated by SOURCE_DATE_EPOCH:\n%s", rel)
	}
	if src := readFile(t, filepath.Join(out, "duo-confidential.sources")); !strings.Contains(src, "URIs: "+docURL+"/apt\n") {
		t.Errorf(".sources:\n%s", src)
	}
	if _, err := os.Stat(bundle); err != nil {
		t.Error(err)
	}
}
