package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// productionTag is the build tag packaging sets for the packaged binary
// (packaging/build/binary.go).
const productionTag = "duo_production"

// scaffoldingPackages may be linked into developer builds (demo, sandbox,
// benchmarks) but never into the packaged binary: each of them can make the
// appliance trust throwaway test roots or a demo GitLab.
var scaffoldingPackages = []string{
	"github.com/duo-confidential/duo-confidential/proxy/sandbox",
	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest",
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest",
	"github.com/duo-confidential/duo-confidential/tls/pebbletest",
}

// depsOf lists the packages the binary links with the given tags.
func depsOf(t *testing.T, tags string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-tags", tags, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %q: %v", tags, err)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	return deps
}

func TestPackagedBuildLinksNoScaffolding(t *testing.T) {
	prod := depsOf(t, productionTag)
	for _, p := range scaffoldingPackages {
		if prod[p] {
			t.Errorf("the packaged build (-tags %s) links %s", productionTag, p)
		}
	}
	// The check must be able to fail: the developer build links the
	// sandbox and the demo issuer (the demo command needs them).
	dev := depsOf(t, "")
	for _, p := range scaffoldingPackages[:3] {
		if !dev[p] {
			t.Errorf("the developer build no longer links %s; is this test still checking anything?", p)
		}
	}
}

// TestPackagedBuildRefusesTestRoots runs the packaged build's binary: no
// demo or sandbox command, and every flag that would trust test roots is
// refused with a reason.
func TestPackagedBuildRefusesTestRoots(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second binary")
	}
	bin := filepath.Join(t.TempDir(), "duo-confidential-production")
	build := exec.Command("go", "build", "-tags", productionTag, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", productionTag, err, out)
	}
	dir := t.TempDir()
	pem := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(pem, []byte("not used"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no demo command", []string{"demo", "--check"}, exitUsage, `unexpected argument demo`},
		{"no sandbox command", []string{"sandbox", "--out", dir}, exitUsage, `unexpected argument sandbox`},
		{"serve --sandbox refused", []string{"serve", "--sandbox", dir}, exitError, "--sandbox trusts TEST vendor roots and is not part of this build"},
		{"attest verify --test-roots refused", []string{"attest", "verify", "--test-roots", pem, "--doc", pem, "--nonce", "00"}, exitError, "--test-roots trusts TEST vendor roots and is not part of this build"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "DUO_CONFIDENTIAL_STATE_DIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			code := 0
			if exit, ok := err.(*exec.ExitError); ok {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !strings.Contains(string(out), tc.wantErr) {
				t.Errorf("exit %d, want %d with %q; output:\n%s", code, tc.wantCode, tc.wantErr, out)
			}
		})
	}
}
