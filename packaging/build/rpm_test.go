package build_test

import (
	"strings"
	"testing"
)

// rpmQuery runs rpm -qp with a query format on the 1.2.2 rpm.
func rpmQuery(t *testing.T, args ...string) string {
	t.Helper()
	need(t, "rpm", "rpm")
	return run(t, "rpm", append(append([]string{"-qp"}, args...), packages(t).v1["rpm"])...)
}

func TestRPMHeader(t *testing.T) {
	tags := []struct{ tag, want string }{
		{"NAME", "duo-confidential"},
		{"VERSION", "1.2.2"},
		{"RELEASE", "1"},
		{"ARCH", "x86_64"},
		{"LICENSE", "LicenseRef-duo-confidential"},
		{"BUILDHOST", "reproducible"},
		{"BUILDTIME", "1767323045"}, // testMTime
		{"PACKAGER", "duo-confidential maintainers <maintainers@duo-confidential.invalid>"},
	}
	for _, tc := range tags {
		if got := rpmQuery(t, "--qf", "%{"+tc.tag+"}"); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.tag, got, tc.want)
		}
	}
	if got := strings.TrimSpace(rpmQuery(t, "--configfiles")); got != "/etc/duo-confidential/config.yaml" {
		t.Errorf("config files = %q, want only the configuration", got)
	}
	// %config(noreplace): RPMFILE_CONFIG (1) | RPMFILE_NOREPLACE (16).
	flags := rpmQuery(t, "--qf", "[%{FILENAMES} %{FILEFLAGS}\n]")
	if !strings.Contains(flags, "/etc/duo-confidential/config.yaml 17\n") {
		t.Errorf("config.yaml is not %%config(noreplace):\n%s", flags)
	}
	if !strings.Contains(rpmQuery(t, "--changelog"), "- 1.2.2-1\n") {
		t.Error("changelog has no 1.2.2-1 entry")
	}
	if req := rpmQuery(t, "-R"); strings.Contains(req, "systemd") {
		t.Errorf("requires systemd; the package must also install in containers:\n%s", req)
	}
}

func TestRPMContents(t *testing.T) {
	// rpm --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
	got := map[string][3]string{}
	for _, line := range strings.Split(strings.TrimSpace(rpmQuery(t, "-l", "--dump")), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			t.Fatalf("unexpected --dump line %q", line)
		}
		if f[2] != "1767323045" {
			t.Errorf("%s mtime %s, want the fixed build time", f[0], f[2])
		}
		got[f[0]] = [3]string{f[4], f[5] + ":" + f[6], f[7] + f[8]}
	}
	want := map[string][3]string{ // mode, owner, config+doc flags
		"/usr/bin/duo-confidential":                        {"0100755", "root:root", "00"},
		"/etc/duo-confidential":                            {"040750", "root:duo-confidential", "00"},
		"/etc/duo-confidential/config.yaml":                {"0100640", "root:duo-confidential", "10"},
		"/usr/lib/systemd/system/duo-confidential.service": {"0100644", "root:root", "00"},
		"/usr/lib/sysusers.d/duo-confidential.conf":        {"0100644", "root:root", "00"},
		"/usr/share/doc/duo-confidential/README.md":        {"0100644", "root:root", "01"},
		"/usr/share/man/man1/duo-confidential.1.gz":        {"0100644", "root:root", "01"},
		"/usr/share/licenses/duo-confidential/copyright":   {"0100644", "root:root", "00"},
	}
	for path, w := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("%s missing", path)
		} else if g != w {
			t.Errorf("%s: %v, want %v", path, g, w)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected file %s", path)
		}
	}
}

// The rpm's scriptlets are the same files as the deb's maintainer scripts.
func TestRPMScripts(t *testing.T) {
	for _, s := range []struct{ tag, file string }{
		{"PREIN", "preinst"}, {"POSTIN", "postinst"}, {"PREUN", "prerm"}, {"POSTUN", "postrm"},
	} {
		got := rpmQuery(t, "--qf", "%{"+s.tag+"}")
		want := repoFile(t, "packaging/scripts/"+s.file+".sh")
		// rpm stores the body without the trailing newline.
		if strings.TrimRight(got, "\n") != strings.TrimRight(want, "\n") {
			t.Errorf("%%%s differs from packaging/scripts/%s.sh", strings.ToLower(s.tag), s.file)
		}
		if prog := rpmQuery(t, "--qf", "%{"+s.tag+"PROG}"); prog != "/bin/sh" {
			t.Errorf("%sPROG = %q, want /bin/sh", s.tag, prog)
		}
	}
}
