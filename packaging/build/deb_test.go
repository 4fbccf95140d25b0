package build_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/packaging/build"
)

func TestDebControl(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	deb := packages(t).v1["deb"]
	fields := []struct{ name, want string }{
		{"Package", "duo-confidential"},
		{"Version", "1.2.2-1"},
		{"Architecture", "amd64"},
		{"Section", "net"},
		{"Priority", "optional"},
		{"Maintainer", "duo-confidential maintainers <maintainers@duo-confidential.invalid>"},
		// A static binary: nothing to depend on, and no dependency on
		// systemd, so the package also installs in containers.
		{"Depends", ""},
		{"Pre-Depends", ""},
	}
	for _, f := range fields {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, f.name)); got != f.want {
			t.Errorf("%s = %q, want %q", f.name, got, f.want)
		}
	}

	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctl)
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(conffiles); got != "/etc/duo-confidential/config.yaml\n" {
		t.Errorf("conffiles = %q, want only the configuration", got)
	}
	for _, name := range []string{"preinst", "postinst", "prerm", "postrm"} {
		got, err := os.ReadFile(filepath.Join(ctl, name))
		if err != nil {
			t.Errorf("maintainer script %s missing: %v", name, err)
			continue
		}
		if want := repoFile(t, "packaging/scripts/"+name+".sh"); string(got) != want {
			t.Errorf("%s differs from packaging/scripts/%s.sh", name, name)
		}
		if fi, _ := os.Stat(filepath.Join(ctl, name)); fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v, want 0755", name, fi.Mode().Perm())
		}
	}
}

// debEntry is one line of `dpkg-deb -c`.
type debEntry struct{ mode, owner string }

func TestDebContents(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	got := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", packages(t).v1["deb"])), "\n") {
		// drwxr-x--- root/duo-confidential 0 2026-01-02 03:04 ./etc/duo-confidential/
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb -c line %q", line)
		}
		if f[3] != "2026-01-02" {
			t.Errorf("%s dated %s %s, want the fixed build time", f[5], f[3], f[4])
		}
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if path == "" {
			path = "/"
		}
		got[path] = debEntry{f[0], f[1]}
	}
	want := map[string]debEntry{
		"/usr/bin/duo-confidential":                           {"-rwxr-xr-x", "root/root"},
		"/etc/duo-confidential":                               {"drwxr-x---", "root/duo-confidential"},
		"/etc/duo-confidential/config.yaml":                   {"-rw-r-----", "root/duo-confidential"},
		"/usr/lib/systemd/system/duo-confidential.service":    {"-rw-r--r--", "root/root"},
		"/usr/lib/sysusers.d/duo-confidential.conf":           {"-rw-r--r--", "root/root"},
		"/usr/share/doc/duo-confidential/README.md":           {"-rw-r--r--", "root/root"},
		"/usr/share/doc/duo-confidential/copyright":           {"-rw-r--r--", "root/root"},
		"/usr/share/doc/duo-confidential/changelog.Debian.gz": {"-rw-r--r--", "root/root"},
		"/usr/share/man/man1/duo-confidential.1.gz":           {"-rw-r--r--", "root/root"},
		"/usr/share/lintian/overrides/duo-confidential":       {"-rw-r--r--", "root/root"},
	}
	for path, w := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("%s missing", path)
		} else if g != w {
			t.Errorf("%s: %s %s, want %s %s", path, g.mode, g.owner, w.mode, w.owner)
		}
	}
	for path, g := range got {
		if _, ok := want[path]; !ok && !strings.HasPrefix(g.mode, "d") {
			t.Errorf("unexpected file %s", path)
		}
		if strings.HasPrefix(path, "/var/lib/duo-confidential") {
			t.Errorf("%s shipped: the state directory belongs to the service, not the package", path)
		}
	}
}

// The packaged config is the example, byte for byte, and the packaged binary
// is static, version-stamped and free of build paths.
func TestDebPayload(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", packages(t).v1["deb"], root)
	cfg, err := os.ReadFile(filepath.Join(root, "etc/duo-confidential/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg) != repoFile(t, "appliance/config/config.example.yaml") {
		t.Error("packaged config.yaml differs from appliance/config/config.example.yaml")
	}
	bin := filepath.Join(root, "usr/bin/duo-confidential")
	if out := run(t, bin, "version"); !strings.Contains(out, " 1.2.2 ") {
		t.Errorf("version output %q lacks 1.2.2", out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), packages(t).repo) {
		t.Errorf("binary contains the build path %s (-trimpath missing?)", packages(t).repo)
	}
	info := run(t, "go", "version", "-m", bin)
	// (cmd/go leaves -ldflags out of the build info under -trimpath; the
	// version output above shows the stamp.)
	for _, w := range []string{"-trimpath=true", "CGO_ENABLED=0", "GOOS=linux", "-tags=" + build.ProductionTag} {
		if !strings.Contains(info, w) {
			t.Errorf("build info lacks %s:\n%s", w, info)
		}
	}
	// The packaged build has no demo or sandbox (the main module's
	// TestPackagedBuildLinksNoScaffolding checks what it links).
	if _, stderr, err := runErr(bin, "demo", "--check"); err == nil || !strings.Contains(stderr, "unexpected argument demo") {
		t.Errorf("packaged binary runs the demo (err %v):\n%s", err, stderr)
	}
	chg := run(t, "sh", "-c", "gzip -dc "+filepath.Join(root, "usr/share/doc/duo-confidential/changelog.Debian.gz"))
	if !strings.HasPrefix(chg, "duo-confidential (1.2.2-1) unstable; urgency=medium\n") {
		t.Errorf("changelog starts %q", chg)
	}
}
