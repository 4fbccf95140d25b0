package build_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// lintian reports nothing beyond the overrides shipped in the package, even
// pedantic and informational tags.
func TestLintian(t *testing.T) {
	need(t, "lintian", "lintian")
	out, errOut, err := runErr("lintian", "--pedantic", "--info", "--display-experimental", "--fail-on", "error,warning,info,pedantic", packages(t).v1["deb"])
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("lintian: %v\n%s%s", err, out, errOut)
	}
}

// rpmlint reports nothing beyond the justified filters in packaging/rpm/rpmlintrc.
func TestRpmlint(t *testing.T) {
	need(t, "rpmlint", "rpmlint")
	need(t, "cpio", "cpio")
	// rpmlint unpacks with `rpm2cpio | cpio -id`. nfpm's rpm payload names are
	// absolute (/usr/bin/...), which GNU cpio would write to the real root
	// filesystem: force relative extraction with a cpio wrapper first in PATH.
	wrap := t.TempDir()
	script := "#!/bin/sh\nexec /usr/bin/cpio --no-absolute-filenames \"$@\"\n"
	if err := os.WriteFile(filepath.Join(wrap, "cpio"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", wrap+string(os.PathListSeparator)+os.Getenv("PATH"))
	rc := filepath.Join(packages(t).repo, "packaging", "rpm", "rpmlintrc")
	out, errOut, err := runErr("rpmlint", "-r", rc, packages(t).v1["rpm"])
	if err != nil || !strings.Contains(out, "0 errors, 0 warnings, 0 badness") {
		t.Errorf("rpmlint: %v\n%s%s", err, out, errOut)
	}
}

func TestShellcheck(t *testing.T) {
	need(t, "shellcheck", "shellcheck")
	dir := filepath.Join(packages(t).repo, "packaging")
	files := []string{filepath.Join(dir, "ci", "make-rootfs.sh")}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		files = append(files, filepath.Join(dir, "scripts", s+".sh"))
	}
	if vm, _ := filepath.Glob(filepath.Join(dir, "vm", "*.sh")); len(vm) > 0 {
		files = append(files, vm...)
	}
	// Each script's shebang picks the dialect: the maintainer scripts and
	// firstboot are POSIX sh, the VM build and smoke test are bash.
	run(t, "shellcheck", files...)
}

// The scripts copy their shared helpers (dpkg and rpm run each alone); every
// copy of a helper or a setting must be identical.
func TestScriptHelpersAgree(t *testing.T) {
	fn := regexp.MustCompile(`(?ms)^([a-z_]+)\(\) \{\n.*?^\}\n`)
	assign := regexp.MustCompile(`(?m)^([a-z]+)=(.*)$`)
	seen := map[string]string{}
	where := map[string]string{}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		text := repoFile(t, "packaging/scripts/"+s+".sh")
		for _, m := range fn.FindAllStringSubmatch(text, -1) {
			check(t, seen, where, "function "+m[1], m[0], s)
		}
		for _, m := range assign.FindAllStringSubmatch(text, -1) {
			check(t, seen, where, "variable "+m[1], m[2], s)
		}
	}
	if _, ok := seen["function ensure_user"]; !ok {
		t.Error("no ensure_user helper found; the test's pattern is stale")
	}
}

func check(t *testing.T, seen, where map[string]string, key, body, script string) {
	t.Helper()
	if prev, ok := seen[key]; ok && prev != body {
		t.Errorf("%s differs between %s.sh and %s.sh", key, where[key], script)
		return
	}
	seen[key], where[key] = body, script
}
