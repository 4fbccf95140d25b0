package build_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/packaging/build"
)

// testMTime dates every file of the test packages, so they do not depend on
// the checkout's git history.
var testMTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// builtSet is the packages every test shares: 1.2.2 built twice into
// different directories (reproducibility) and 1.2.3 (upgrades).
type builtSet struct {
	v1, v1again, v2 map[string]string // format -> package path
	repo            string
}

var (
	buildOnce sync.Once
	built     builtSet
	buildErr  error
)

// packages builds the shared packages once per test binary; a failure to
// build fails every test that needs them.
func packages(t *testing.T) builtSet {
	t.Helper()
	if testing.Short() {
		// `make check`'s quick loop: building three versions of the
		// packages takes minutes; .ci/run runs these tests in full.
		t.Skip("builds the deb and rpm three times; run without -short (as .ci/run does)")
	}
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		built.repo, buildErr = build.FindRepo(".")
		if buildErr != nil {
			return
		}
		root, err := os.MkdirTemp("", "duo-confidential-pkgtest-")
		if err != nil {
			buildErr = err
			return
		}
		one := func(version, dir string) map[string]string {
			if buildErr != nil {
				return nil
			}
			arts, err := build.Build(ctx, build.Options{
				Repo: built.repo, OutDir: filepath.Join(root, dir), Version: version, MTime: testMTime,
			})
			if err != nil {
				buildErr = err
				return nil
			}
			m := map[string]string{}
			for _, a := range arts {
				m[a.Format] = a.Path
			}
			return m
		}
		built.v1 = one("1.2.2", "a")
		built.v1again = one("1.2.2", "b")
		built.v2 = one("1.2.3", "c")
	})
	if buildErr != nil {
		t.Fatalf("build packages: %v", buildErr)
	}
	return built
}

// need skips the test when a tool is missing, naming the package that has it
// (.ci/run installs them all, so CI never skips).
func need(t *testing.T, tool, debPackage string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed (apt-get install %s)", tool, debPackage)
	}
}

// run runs a command with a deadline and returns its stdout; it fails the
// test with stderr when the command fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// runErr runs a command with a two-minute deadline and returns stdout,
// stderr and the error.
func runErr(name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive")
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// repoFile reads a file of the repository.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	repo, err := build.FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
