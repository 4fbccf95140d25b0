package build_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rootfsDir is the Debian bookworm minbase root .ci/run builds with
// packaging/ci/make-rootfs.sh; DUO_CI_ROOTFS overrides it.
func rootfsDir() string {
	if d := os.Getenv("DUO_CI_ROOTFS"); d != "" {
		return d
	}
	return "/var/cache/duo-confidential-ci/rootfs"
}

// debianRoot returns a private copy of the cached Debian root with the
// given packages copied into its /tmp, or skips when that is impossible.
func debianRoot(t *testing.T, pkgs ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("install tests need root (chroot); CI runs as root")
	}
	src := rootfsDir()
	if _, err := os.Stat(filepath.Join(src, ".complete")); err != nil {
		t.Skipf("no Debian root at %s: build it with packaging/ci/make-rootfs.sh %s (as .ci/run does)", src, src)
	}
	root := filepath.Join(t.TempDir(), "root")
	run(t, "cp", "-a", src, root)
	// As the chroot's "/", the directory must be traversable by the service user.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		run(t, "cp", p, filepath.Join(root, "tmp", filepath.Base(p)))
	}
	return root
}

// in runs a command inside root as root.
func in(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "chroot", append([]string{root}, args...)...)
}

// asService runs a command inside root as the service user.
func asService(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "chroot", append([]string{"--userspec=duo-confidential:duo-confidential", root}, args...)...)
}

// exists reports whether path exists inside root.
func exists(root, path string) bool {
	_, err := os.Lstat(filepath.Join(root, path))
	return err == nil
}

// wantStat checks owner, group and octal mode of paths inside root.
func wantStat(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for path, w := range want {
		if got := strings.TrimSpace(in(t, root, "stat", "-c", "%U:%G %a", path)); got != w {
			t.Errorf("%s: %s, want %s", path, got, w)
		}
	}
}

// checkFreshInstall checks what any install of version must leave behind.
func checkFreshInstall(t *testing.T, root, version string) {
	t.Helper()
	wantStat(t, root, map[string]string{
		"/usr/bin/duo-confidential":                        "root:root 755",
		"/etc/duo-confidential":                            "root:duo-confidential 750",
		"/etc/duo-confidential/config.yaml":                "root:duo-confidential 640",
		"/var/lib/duo-confidential":                        "duo-confidential:duo-confidential 700",
		"/usr/lib/systemd/system/duo-confidential.service": "root:root 644",
	})
	pw := strings.Split(strings.TrimSpace(in(t, root, "getent", "passwd", "duo-confidential")), ":")
	if len(pw) != 7 || pw[5] != "/var/lib/duo-confidential" || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("service user %q: want home /var/lib/duo-confidential, shell /usr/sbin/nologin", pw)
	}
	if in(t, root, "getent", "group", "duo-confidential") == "" {
		t.Error("no duo-confidential group")
	}
	if out := asService(t, root, "/usr/bin/duo-confidential", "version"); !strings.Contains(out, " "+version+" ") {
		t.Errorf("version %q, want %s", out, version)
	}
	// The service user can read the shipped configuration and it is valid.
	asService(t, root, "/usr/bin/duo-confidential", "config", "check")
	// doctor --offline passes on a fresh install (warnings for what is
	// not configured yet, no failure).
	out := asService(t, root, "/usr/bin/duo-confidential", "doctor", "--offline")
	if !strings.Contains(out, "0 failed") {
		t.Errorf("doctor --offline on a fresh install:\n%s", out)
	}
}

// The edits an admin and the running service make, which no upgrade or
// removal may lose.
const (
	localEdit = "\n# local edit: must survive upgrades\n"
	keyPath   = "/var/lib/duo-confidential/keys/signing.pem"
	keyData   = "not a real key, but must survive upgrades\n"
)

// customise edits the config and writes a key as the service user would.
func customise(t *testing.T, root string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, "etc/duo-confidential/config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(localEdit); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	asService(t, root, "mkdir", "-m", "0700", "/var/lib/duo-confidential/keys")
	asService(t, root, "sh", "-c", "umask 077 && printf '%s' '"+keyData+"' > "+keyPath)
}

// checkCustomised checks the edits of customise are intact.
func checkCustomised(t *testing.T, root, configPath string) {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(root, configPath))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(cfg), localEdit) {
		t.Errorf("%s lost the local edit", configPath)
	}
	key, err := os.ReadFile(filepath.Join(root, keyPath))
	if err != nil || string(key) != keyData {
		t.Errorf("key %s: %q, %v; want it unchanged", keyPath, key, err)
	}
	wantStat(t, root, map[string]string{
		"/var/lib/duo-confidential": "duo-confidential:duo-confidential 700",
		keyPath:                     "duo-confidential:duo-confidential 600",
	})
}

// fakeSystemd makes root look booted with systemd (/run/systemd/system)
// and installs a systemctl that only records its arguments, so the tests
// see what the maintainer scripts ask of systemd.
func fakeSystemd(t *testing.T, root string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"$*\" >> /tmp/systemctl.calls\n"
	if err := os.WriteFile(filepath.Join(root, "usr/bin/systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// wantSystemctl checks the systemctl calls since the last check.
func wantSystemctl(t *testing.T, root, step string, want ...string) {
	t.Helper()
	path := filepath.Join(root, "tmp/systemctl.calls")
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	_ = os.Remove(path)
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(b) == 0 {
		got = nil
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s: systemctl calls %q, want %q", step, got, want)
	}
}
