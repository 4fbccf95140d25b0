package build_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// Install, upgrade, remove and purge the deb in a Debian root with dpkg.
func TestDebInstallUpgradePurge(t *testing.T) {
	b := packages(t)
	root := debianRoot(t, b.v1["deb"], b.v2["deb"])
	v1 := "/tmp/" + filepath.Base(b.v1["deb"])
	v2 := "/tmp/" + filepath.Base(b.v2["deb"])
	fakeSystemd(t, root)
	const unit = "duo-confidential.service"

	in(t, root, "dpkg", "-i", v1)
	wantSystemctl(t, root, "install", "daemon-reload", "--no-reload enable "+unit)
	checkFreshInstall(t, root, "1.2.2")
	customise(t, root)

	in(t, root, "dpkg", "-i", v2)
	wantSystemctl(t, root, "upgrade", "daemon-reload", "try-restart "+unit)
	if got := in(t, root, "dpkg-query", "-W", "-f", "${Version}", "duo-confidential"); got != "1.2.3-1" {
		t.Fatalf("after upgrade: version %q", got)
	}
	checkFreshInstall(t, root, "1.2.3")
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")

	// remove: the program goes, configuration, state and user stay.
	in(t, root, "dpkg", "-r", "duo-confidential")
	// Stopped and disabled: a removed program must not start at boot.
	wantSystemctl(t, root, "remove", "stop "+unit, "--no-reload disable "+unit, "daemon-reload")
	if exists(root, "/usr/bin/duo-confidential") {
		t.Error("binary left after remove")
	}
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")
	in(t, root, "getent", "passwd", "duo-confidential")

	// purge: everything goes, including the enablement link that a real
	// systemctl enable made.
	link := "/etc/systemd/system/multi-user.target.wants/" + unit
	in(t, root, "mkdir", "-p", filepath.Dir(link))
	in(t, root, "ln", "-s", "/usr/lib/systemd/system/"+unit, link)
	in(t, root, "dpkg", "-P", "duo-confidential")
	wantSystemctl(t, root, "purge")
	for _, p := range []string{"/var/lib/duo-confidential", "/etc/duo-confidential", link} {
		if exists(root, p) {
			t.Errorf("%s left after purge", p)
		}
	}
	for _, db := range []string{"passwd", "group"} {
		if _, _, err := runErr("chroot", root, "getent", db, "duo-confidential"); err == nil {
			t.Errorf("%s entry duo-confidential left after purge", db)
		}
	}
}

// An account the admin made beforehand (say, with a uid pinned across a
// cluster) is used as it is.
func TestDebInstallKeepsExistingUser(t *testing.T) {
	b := packages(t)
	root := debianRoot(t, b.v1["deb"])
	in(t, root, "groupadd", "--system", "--gid", "990", "duo-confidential")
	in(t, root, "useradd", "--system", "--uid", "990", "--gid", "990", "--home-dir", "/var/lib/duo-confidential",
		"--shell", "/usr/sbin/nologin", "duo-confidential")
	in(t, root, "dpkg", "-i", "/tmp/"+filepath.Base(b.v1["deb"]))
	if got := strings.TrimSpace(in(t, root, "id", "-u", "duo-confidential")); got != "990" {
		t.Errorf("uid %s, want the existing 990", got)
	}
	checkFreshInstall(t, root, "1.2.2")
}
