package build_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The offline bundle installs with apt and with dnf from its file: URLs
// alone — no HTTP server runs in this test — unpacked, checked and used
// with the documented commands; a newer bundle upgrades the same way.
func TestOfflineBundle(t *testing.T) {
	b := packages(t)
	key, _ := releaseKeys(t)
	s := signer(t, key)
	dir := t.TempDir()
	old := filepath.Join(dir, "old.tar")
	publish(t, s, filepath.Join(dir, "repo-old"), docURL, old, b.v1["deb"], b.v1["rpm"])
	newer := filepath.Join(dir, "new.tar")
	publish(t, s, filepath.Join(dir, "repo-new"), docURL, newer, b.v1["deb"], b.v1["rpm"], b.v2["deb"], b.v2["rpm"])

	// The bundle's README gives the documented commands.
	readme := run(t, "tar", "-xOf", newer, "duo-confidential-repo/README.txt")
	for _, block := range []string{"offline-unpack", "offline-apt", "offline-dnf", "offline-replace"} {
		for _, line := range strings.Split(strings.TrimSpace(docBlock(t, block)), "\n") {
			if !strings.Contains(readme, line) {
				t.Errorf("bundle README lacks the documented command %q", line)
			}
		}
	}
	if !strings.Contains(readme, s.Fingerprint()) {
		t.Error("bundle README does not name the key's fingerprint")
	}

	t.Run("apt", func(t *testing.T) {
		root := clientRoot(t)
		copyInto(t, old, filepath.Join(root, "root", bundleName))
		out := mustDoc(t, root, "offline-unpack", "")
		if !strings.Contains(out, s.Fingerprint()) {
			t.Errorf("gpgv did not show the key's fingerprint:\n%s", out)
		}
		mustDoc(t, root, "offline-apt", "")
		if v := debVersion(root); v != "1.2.2-1" {
			t.Fatalf("installed %q, want 1.2.2-1", v)
		}
		checkFreshInstall(t, root, "1.2.2")
		if src := readFile(t, filepath.Join(root, "etc/apt/sources.list.d/duo-confidential.sources")); !strings.Contains(src, "URIs: file:/srv/duo-confidential-repo/apt\n") {
			t.Errorf("offline source:\n%s", src)
		}
		customise(t, root)
		copyInto(t, newer, filepath.Join(root, "root", bundleName))
		mustDoc(t, root, "offline-replace", "")
		mustDoc(t, root, "offline-unpack", "")
		mustDoc(t, root, "apt-upgrade", "")
		if v := debVersion(root); v != "1.2.3-1" {
			t.Fatalf("after upgrade %q, want 1.2.3-1", v)
		}
		checkCustomised(t, root, "/etc/duo-confidential/config.yaml")
	})
	t.Run("dnf", func(t *testing.T) {
		root := dnfRoot(t)
		copyInto(t, old, filepath.Join(root, "root", bundleName))
		mustDoc(t, root, "offline-unpack", "")
		mustDoc(t, root, "offline-dnf", "")
		if v := rpmVersion(root); v != "1.2.2-1" {
			t.Fatalf("installed %q, want 1.2.2-1", v)
		}
		checkFreshInstall(t, root, "1.2.2")
		customise(t, root)
		copyInto(t, newer, filepath.Join(root, "root", bundleName))
		mustDoc(t, root, "offline-replace", "")
		mustDoc(t, root, "offline-unpack", "")
		mustDoc(t, root, "dnf-upgrade", "")
		if v := rpmVersion(root); v != "1.2.3-1" {
			t.Fatalf("after upgrade %q, want 1.2.3-1", v)
		}
		checkCustomised(t, root, "/etc/duo-confidential/config.yaml")
	})
	t.Run("a changed file fails the check", func(t *testing.T) {
		root := clientRoot(t)
		copyInto(t, newer, filepath.Join(root, "root", bundleName))
		mustDoc(t, root, "offline-unpack", "")
		readme := filepath.Join(root, "srv/duo-confidential-repo/README.txt")
		if err := os.WriteFile(readme, []byte("changed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Unpacking again over it restores it; the check is the second line.
		block := strings.Split(strings.TrimSpace(docBlock(t, "offline-unpack")), "\n")
		if out, _, err := runErr("chroot", root, "sh", "-c", block[1]); err == nil {
			t.Errorf("the documented check passed a changed file:\n%s", out)
		}
	})
}

// copyInto copies a file from the host into a root.
func copyInto(t *testing.T, src, dst string) {
	t.Helper()
	run(t, "cp", src, dst)
}

// mirrorURL is the mirror's URL in docs/operations.md.
const mirrorURL = "https://mirror.example.com"

// A mirror made from the offline bundle serves apt and dnf clients that
// follow the documented mirror commands. The documented unpacking into the
// web server's root is done here on the host (tar -C web -xf), served on
// loopback; the client blocks run verbatim with the mirror's URL replaced.
func TestMirrorFromBundle(t *testing.T) {
	b := packages(t)
	key, _ := releaseKeys(t)
	s := signer(t, key)
	dir := t.TempDir()
	bundle := filepath.Join(dir, bundleName)
	publish(t, s, filepath.Join(dir, "repo"), docURL, bundle, b.v1["deb"], b.v1["rpm"])
	web := filepath.Join(dir, "www")
	if err := os.Mkdir(web, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "-C", web, "-xf", bundle)
	url := serve(t, web)
	for _, tc := range []struct {
		block string
		dnf   bool
	}{
		{"mirror-apt", false}, {"mirror-dnf", true},
	} {
		t.Run(tc.block, func(t *testing.T) {
			root := dnfRoot(t)
			script := strings.ReplaceAll(docBlock(t, tc.block), mirrorURL, url)
			out, err := runScript(root, script)
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.block, err, out)
			}
			if tc.dnf {
				if v := rpmVersion(root); v != "1.2.2-1" {
					t.Fatalf("installed %q", v)
				}
			} else if v := debVersion(root); v != "1.2.2-1" {
				t.Fatalf("installed %q", v)
			}
			checkFreshInstall(t, root, "1.2.2")
		})
	}
}
