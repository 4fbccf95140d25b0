package build_test

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A new user adds the key and the source as docs/operations.md says,
// installs, upgrades to a newer publication (config and keys kept), rolls
// back one version and holds it, and removes and purges — all from the
// repository served on loopback, all with the documented commands.
func TestAptRepository(t *testing.T) {
	b := packages(t)
	key, _ := releaseKeys(t)
	s := signer(t, key)
	root := clientRoot(t)
	web := filepath.Join(t.TempDir(), "web")
	url := serve(t, web)
	publish(t, s, web, url, "", b.v1["deb"], b.v1["rpm"])

	mustDoc(t, root, "apt-add", url)
	if v := debVersion(root); v != "1.2.2-1" {
		t.Fatalf("installed %q, want 1.2.2-1", v)
	}
	checkFreshInstall(t, root, "1.2.2")
	// The key and source are the published ones, and the key is the
	// release key (what "check the fingerprint" shows).
	if got, want := readFile(t, filepath.Join(root, "etc/apt/keyrings/duo-confidential.gpg")), readFile(t, filepath.Join(web, "duo-confidential.gpg")); got != want {
		t.Error("installed keyring differs from the published one")
	}
	if out := run(t, "gpg", "--show-keys", filepath.Join(root, "etc/apt/keyrings/duo-confidential.gpg")); !strings.Contains(out, s.Fingerprint()) {
		t.Errorf("gpg --show-keys does not show the release key's fingerprint %s:\n%s", s.Fingerprint(), out)
	}
	customise(t, root)

	// A newer release, published beside the old one.
	publish(t, s, web, url, "", b.v1["deb"], b.v1["rpm"], b.v2["deb"], b.v2["rpm"])
	mustDoc(t, root, "apt-upgrade", url)
	if v := debVersion(root); v != "1.2.3-1" {
		t.Fatalf("after apt upgrade: %q, want 1.2.3-1", v)
	}
	checkFreshInstall(t, root, "1.2.3")
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")

	// Roll back one version and hold it: the next upgrade leaves it.
	out := mustDoc(t, root, "apt-rollback", url)
	if !strings.Contains(out, "1.2.2-1") || !strings.Contains(out, "1.2.3-1") {
		t.Errorf("apt list --all-versions does not list both versions:\n%s", out)
	}
	if v := debVersion(root); v != "1.2.2-1" {
		t.Fatalf("after rollback: %q, want 1.2.2-1", v)
	}
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")
	mustDoc(t, root, "apt-upgrade", url)
	if v := debVersion(root); v != "1.2.2-1" {
		t.Fatalf("held package upgraded to %q", v)
	}

	mustDoc(t, root, "apt-unhold", url)
	mustDoc(t, root, "apt-upgrade", url)
	if v := debVersion(root); v != "1.2.3-1" {
		t.Fatalf("after unhold and upgrade: %q, want 1.2.3-1", v)
	}

	mustDoc(t, root, "apt-remove", url)
	if v := debVersion(root); v != "" {
		t.Errorf("after remove and purge: %q installed", v)
	}
	if exists(root, "/var/lib/duo-confidential") {
		t.Error("state left after purge")
	}
}

// apt refuses a repository whose index was changed after signing, one
// signed by another key, and an unsigned one: update fails, naming the
// reason, and nothing is installed.
func TestAptRepositoryRefusesBadSignatures(t *testing.T) {
	b := packages(t)
	key, wrongKey := releaseKeys(t)
	s := signer(t, key)
	wrong := signer(t, wrongKey)
	tests := []struct {
		name    string
		prepare func(t *testing.T, web, url string)
		want    *regexp.Regexp // matches apt's output
	}{
		{"tampered Packages", func(t *testing.T, web, url string) {
			publish(t, s, web, url, "", b.v1["deb"])
			// Claim a newer version for the same file, consistently in
			// all three forms of the index, without re-signing Release.
			tamperPackages(t, filepath.Join(web, "apt/dists/stable/main/binary-amd64/Packages"))
			// apt checks the size before the hashes: which one it
			// names depends on whether the forged index's length changed.
		}, regexp.MustCompile(`Hash Sum mismatch|File has unexpected size`)},
		{"signed by another key", func(t *testing.T, web, url string) {
			// The client has the release key (from the real site); the
			// repository it reaches was signed by someone else.
			publish(t, wrong, web, url, "", b.v1["deb"])
			replaceKeyring(t, s, web)
		}, regexp.MustCompile(`NO_PUBKEY`)},
		{"unsigned", func(t *testing.T, web, url string) {
			publish(t, s, web, url, "", b.v1["deb"])
			for _, f := range []string{"InRelease", "Release.gpg"} {
				if err := os.Remove(filepath.Join(web, "apt/dists/stable", f)); err != nil {
					t.Fatal(err)
				}
			}
		}, regexp.MustCompile(`is not signed`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := clientRoot(t)
			web := filepath.Join(t.TempDir(), "web")
			url := serve(t, web)
			tc.prepare(t, web, url)
			out, err := runDoc(t, root, "apt-add", url)
			if err == nil {
				t.Fatalf("apt accepted the repository:\n%s", out)
			}
			if !tc.want.MatchString(out) {
				t.Errorf("apt's refusal does not say %q:\n%s", tc.want, out)
			}
			if !strings.Contains(out, "+ sudo apt update") || strings.Contains(out, "+ sudo apt install") {
				t.Errorf("want the refusal at apt update:\n%s", out)
			}
			if v := debVersion(root); v != "" {
				t.Errorf("%s installed", v)
			}
			// A later install does not get it from the cached lists either.
			if _, _, err := runErr("chroot", root, "apt-get", "install", "-y", "duo-confidential"); err == nil {
				t.Error("apt-get install succeeded after the refused update")
			}
		})
	}
}

// tamperPackages changes the version in a Packages index and rewrites its
// .gz and .xz to match, leaving Release (and its signatures) alone.
func tamperPackages(t *testing.T, path string) {
	t.Helper()
	data := readFile(t, path)
	forged := strings.Replace(data, "Version: 1.2.2-1", "Version: 9.9.9-1", 1)
	if forged == data {
		t.Fatalf("%s has no version 1.2.2-1 to change", path)
	}
	if err := os.WriteFile(path, []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write([]byte(forged)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".gz", gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	xz, err := exec.Command("xz", "-9", "--stdout", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".xz", xz, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readFile reads a file or fails the test.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
