package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/appliance/config"
)

// binPath is the real binary, built once by TestMain, so these tests see
// exactly what an admin sees: exit codes, stdout and stderr.
var binPath string

const testVersion = "v9.9.9-clitest"

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "duo-confidential-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "duo-confidential")
	build := exec.Command("go", "build", "-o", binPath, "-ldflags", "-X main.version="+testVersion, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "TestMain: building the binary:", err)
		return 1
	}
	return m.Run()
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary with args and a clean environment (no
// DUO_CONFIDENTIAL_* from the caller) plus env.
func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, out.String(), errOut.String()}
}

func (r result) want(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	r := runBin(t, nil, "version")
	r.want(t, 0, []string{"duo-confidential " + testVersion + " (", "go1."}, nil)
	if r.stderr != "" {
		t.Errorf("version wrote to stderr: %q", r.stderr)
	}

	r = runBin(t, nil, "version", "--json")
	r.want(t, 0, nil, nil)
	var v VersionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("version --json is not JSON: %v\n%s", err, r.stdout)
	}
	if v.Version != testVersion || v.GoVersion == "" || v.Platform == "" {
		t.Errorf("version --json = %+v", v)
	}
}

func TestConfigExample(t *testing.T) {
	r := runBin(t, nil, "config", "example")
	r.want(t, 0, nil, nil)
	if r.stdout != string(config.ExampleConfig) {
		t.Error("config example does not print the embedded example verbatim")
	}
}

func TestConfigCheckExample(t *testing.T) {
	path := writeTemp(t, "config.yaml", string(config.ExampleConfig))
	runBin(t, nil, "config", "check", "--config", path).
		want(t, 0, []string{"config OK: " + path + "\n", "state_dir    /var/lib/duo-confidential", "manifest     dynamic"}, nil)
	// The positional form and DUO_CONFIDENTIAL_CONFIG select the file too.
	runBin(t, nil, "config", "check", path).want(t, 0, []string{"config OK: " + path}, nil)
	runBin(t, []string{"DUO_CONFIDENTIAL_CONFIG=" + path}, "config", "check").want(t, 0, []string{"config OK: " + path}, nil)
}

func TestConfigCheckBadFile(t *testing.T) {
	path := writeTemp(t, "bad.yaml", "state_dir: /srv/dc\natestation:\n  manifest: {}\nlog:\n  level: loud\n")
	r := runBin(t, nil, "config", "check", "--config", path)
	r.want(t, 1, nil, []string{
		"duo-confidential: configuration " + path + " is not valid (2 problems):",
		path + `:2: unknown key "atestation" (did you mean "attestation"?)`,
		path + `:5: log.level: must be one of debug, info, warn, error; got "loud"`,
	})
	if r.stdout != "" {
		t.Errorf("a failed check wrote to stdout: %q", r.stdout)
	}
}

func TestConfigCheckEnv(t *testing.T) {
	path := writeTemp(t, "config.yaml", "")
	runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=/srv/env"}, "config", "check", path).
		want(t, 0, []string{"state_dir    /srv/env", "overrides    DUO_CONFIDENTIAL_STATE_DIR"}, nil)
	runBin(t, []string{"DUO_CONFIDENTIAL_STATEDIR=/srv/env"}, "config", "check", path).
		want(t, 1, nil, []string{"env DUO_CONFIDENTIAL_STATEDIR: unknown environment variable", "DUO_CONFIDENTIAL_STATE_DIR"})
}

func TestConfigCheckMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	runBin(t, nil, "config", "check", "--config", missing).
		want(t, 1, nil, []string{"duo-confidential: configuration file " + missing + " does not exist"})

	if _, err := os.Stat(DefaultConfigPath); err == nil {
		t.Skipf("%s exists on this machine; cannot test the missing-default case", DefaultConfigPath)
	}
	runBin(t, nil, "config", "check").
		want(t, 0, []string{"config OK: " + DefaultConfigPath + " (file not found: built-in defaults)"}, nil)
}

func TestUsageErrors(t *testing.T) {
	runBin(t, nil, "no-such-command").want(t, 2, nil, []string{"duo-confidential: unexpected argument no-such-command", "--help"})
	runBin(t, nil).want(t, 2, nil, []string{"duo-confidential: expected one of"})
	runBin(t, nil, "--log-level", "loud", "version").want(t, 2, nil, []string{`--log-level must be one of debug, info, warn, error, got "loud"`})
	runBin(t, nil, "--log-format", "xml", "version").want(t, 2, nil, []string{"--log-format must be one of text, json"})
	runBin(t, nil, "--help").want(t, 0, []string{"config check", "attest verify", "collateral import", "demo"}, nil)
}

// TestLogsGoToStderr checks that logs never mix into stdout, where command
// output (JSON reports) goes, and that the log flags take effect.
func TestLogsGoToStderr(t *testing.T) {
	path := writeTemp(t, "config.yaml", "")
	r := runBin(t, nil, "--log-level", "debug", "--log-format", "json", "config", "check", path)
	r.want(t, 0, []string{"config OK"}, []string{`"level":"DEBUG"`, `"msg":"configuration loaded"`})
	if strings.Contains(r.stdout, "DEBUG") {
		t.Errorf("log line on stdout:\n%s", r.stdout)
	}
	// log.level from the file applies when no flag is given.
	quiet := writeTemp(t, "config.yaml", "log:\n  level: debug\n")
	runBin(t, nil, "config", "check", quiet).want(t, 0, nil, []string{"level=DEBUG"})
	if r := runBin(t, nil, "config", "check", path); strings.Contains(r.stderr, "DEBUG") {
		t.Errorf("debug log at default level:\n%s", r.stderr)
	}
}
