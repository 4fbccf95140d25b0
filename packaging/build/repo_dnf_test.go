package build_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The same user journey with dnf (Debian's dnf 4 and rpm 4.18 in the
// Debian root, with the documented commands): add the .repo, install with
// the key imported after the prompt, upgrade, roll back and pin, remove.
// Signature checks stay on throughout (gpgcheck=1, repo_gpgcheck=1).
func TestDnfRepository(t *testing.T) {
	b := packages(t)
	key, _ := releaseKeys(t)
	s := signer(t, key)
	root := dnfRoot(t)
	web := filepath.Join(t.TempDir(), "web")
	url := serve(t, web)
	publish(t, s, web, url, "", b.v1["deb"], b.v1["rpm"])

	out := mustDoc(t, root, "dnf-add", url)
	// dnf showed the release key before importing it.
	if !strings.Contains(out, "Importing GPG key") || !strings.Contains(strings.ReplaceAll(out, " ", ""), s.Fingerprint()) {
		t.Errorf("dnf did not show the release key's fingerprint %s before importing it:\n%s", s.Fingerprint(), out)
	}
	if v := rpmVersion(root); v != "1.2.2-1" {
		t.Fatalf("installed %q, want 1.2.2-1", v)
	}
	checkFreshInstall(t, root, "1.2.2")
	customise(t, root)

	publish(t, s, web, url, "", b.v1["deb"], b.v1["rpm"], b.v2["deb"], b.v2["rpm"])
	mustDoc(t, root, "dnf-upgrade", url)
	if v := rpmVersion(root); v != "1.2.3-1" {
		t.Fatalf("after dnf upgrade: %q, want 1.2.3-1", v)
	}
	checkFreshInstall(t, root, "1.2.3")
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")

	mustDoc(t, root, "dnf-rollback", url)
	if v := rpmVersion(root); v != "1.2.2-1" {
		t.Fatalf("after dnf downgrade: %q, want 1.2.2-1", v)
	}
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")
	// While excluded, dnf says there is nothing to upgrade it to.
	if out, err := runDoc(t, root, "dnf-upgrade", url); err == nil || !strings.Contains(out, "No match for argument: duo-confidential") {
		t.Errorf("dnf upgrade of the excluded package: %v\n%s", err, out)
	}
	if v := rpmVersion(root); v != "1.2.2-1" {
		t.Fatalf("excluded package upgraded to %q", v)
	}

	mustDoc(t, root, "dnf-unpin", url)
	mustDoc(t, root, "dnf-upgrade", url)
	if v := rpmVersion(root); v != "1.2.3-1" {
		t.Fatalf("after unpin and upgrade: %q, want 1.2.3-1", v)
	}

	mustDoc(t, root, "dnf-remove", url)
	if v := rpmVersion(root); v != "" {
		t.Errorf("after dnf remove: %q installed", v)
	}
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml.rpmsave")
}

// dnf refuses a package that is not what the release key signed: changed
// after publication (repodata no longer matches), and changed with the
// repodata rebuilt and repomd.xml re-signed by the release key (so only the
// package's own signature, gpgcheck=1, can catch it), and a repository
// whose metadata another key signed (repo_gpgcheck=1).
func TestDnfRepositoryRefusesTampering(t *testing.T) {
	b := packages(t)
	key, wrongKey := releaseKeys(t)
	s := signer(t, key)
	wrong := signer(t, wrongKey)
	rpmFile := func(web string) string {
		return filepath.Join(web, "rpm/packages", filepath.Base(b.v1["rpm"]))
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, web, url string)
		want    string
	}{
		{"package changed", func(t *testing.T, web, url string) {
			publish(t, s, web, url, "", b.v1["rpm"])
			flipByte(t, rpmFile(web))
		}, "checksum"},
		{"package changed, metadata re-signed", func(t *testing.T, web, url string) {
			publish(t, s, web, url, "", b.v1["rpm"])
			flipByte(t, rpmFile(web))
			dir := filepath.Join(web, "rpm")
			if err := os.RemoveAll(filepath.Join(dir, "repodata")); err != nil {
				t.Fatal(err)
			}
			run(t, "createrepo_c", "--quiet", "--no-database", dir)
			repomd := filepath.Join(dir, "repodata/repomd.xml")
			if err := s.DetachSign(context.Background(), repomd, repomd+".asc"); err != nil {
				t.Fatal(err)
			}
		}, "GPG check FAILED"},
		{"metadata signed by another key", func(t *testing.T, web, url string) {
			publish(t, wrong, web, url, "", b.v1["rpm"])
			replaceKeyring(t, s, web)
		}, "repomd.xml GPG signature verification error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := dnfRoot(t)
			web := filepath.Join(t.TempDir(), "web")
			url := serve(t, web)
			tc.prepare(t, web, url)
			out, err := runDoc(t, root, "dnf-add", url)
			if err == nil {
				t.Fatalf("dnf installed from the tampered repository:\n%s", out)
			}
			if tc.want != "" && !strings.Contains(out, tc.want) {
				t.Errorf("dnf's refusal does not say %q:\n%s", tc.want, out)
			}
			if v := rpmVersion(root); v != "" {
				t.Errorf("%s installed", v)
			}
			if exists(root, "/usr/bin/duo-confidential") {
				t.Error("the binary was unpacked")
			}
		})
	}
}

// dnfRoot is clientRoot with the directory dnf's .repo files live in, which
// every rpm-based system has.
func dnfRoot(t *testing.T) string {
	t.Helper()
	root := clientRoot(t)
	if err := os.MkdirAll(filepath.Join(root, "etc/yum.repos.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// flipByte changes one byte near the end of a file (inside an rpm's
// compressed payload).
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5000] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
