package build_test

import (
	"strings"
	"testing"
)

// rpmIn runs rpm on root's own database; the scriptlets run chrooted into it.
// The root is Debian (no Fedora root can be built here without network
// access beyond Debian's mirror), so this checks rpm's side: %pre/%post/
// %preun/%postun with rpm's arguments, %config(noreplace), and the files'
// owners and modes. --nodeps: the root has no rpm database of its libc.
func rpmIn(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "rpm", append([]string{"--root", root, "--force-debian", "--nodeps"}, args...)...)
}

// Install, upgrade and erase the rpm with rpm's own argument conventions.
func TestRPMInstallUpgradeErase(t *testing.T) {
	need(t, "rpm", "rpm")
	b := packages(t)
	root := debianRoot(t)
	run(t, "rpm", "--root", root, "--initdb")
	fakeSystemd(t, root)
	const unit = "duo-confidential.service"

	rpmIn(t, root, "-i", b.v1["rpm"])
	wantSystemctl(t, root, "install", "daemon-reload", "--no-reload enable "+unit)
	checkFreshInstall(t, root, "1.2.2")
	customise(t, root)

	rpmIn(t, root, "-U", b.v2["rpm"])
	// The old package's %preun/%postun get 1 and do nothing.
	wantSystemctl(t, root, "upgrade", "daemon-reload", "try-restart "+unit)
	if got := run(t, "rpm", "--root", root, "-q", "--qf", "%{VERSION}", "duo-confidential"); got != "1.2.3" {
		t.Fatalf("after upgrade: version %q", got)
	}
	checkFreshInstall(t, root, "1.2.3")
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml")

	// erase: rpm has no purge. The edited config is kept as .rpmsave, state
	// and the user stay (docs/operations.md says how to delete them).
	rpmIn(t, root, "-e", "duo-confidential")
	wantSystemctl(t, root, "erase", "stop "+unit, "--no-reload disable "+unit, "daemon-reload")
	if exists(root, "/usr/bin/duo-confidential") {
		t.Error("binary left after erase")
	}
	checkCustomised(t, root, "/etc/duo-confidential/config.yaml.rpmsave")
	if out := in(t, root, "getent", "passwd", "duo-confidential"); !strings.HasPrefix(out, "duo-confidential:") {
		t.Error("service user removed on erase")
	}
}
