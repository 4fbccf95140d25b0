package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/appliance/doctor"
	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// doctorLines maps each check name to its status and detail line in a
// text report.
func doctorLines(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "PASS" || f[0] == "WARN" || f[0] == "FAIL" || f[0] == "SKIP") {
			lines[f[1]] = f[0] + " " + strings.Join(f[2:], " ")
		}
	}
	return lines
}

// freshInstall is a state directory as the package leaves it (empty,
// 0700) and the example configuration, the package's conffile.
func freshInstall(t *testing.T) (cfg, state string) {
	t.Helper()
	state = filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "config.yaml", string(config.ExampleConfig)), state
}

// TestDoctorFreshInstallOffline is what the package test runs in a new
// Debian root: nothing configured yet, no FAIL, exit 0.
func TestDoctorFreshInstallOffline(t *testing.T) {
	t.Parallel()
	cfg, state := freshInstall(t)
	r := runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, "--config", cfg, "doctor", "--offline")
	r.want(t, 0, nil, nil)
	if r.stderr != "" {
		t.Errorf("stderr: %s", r.stderr)
	}
	out := strings.ReplaceAll(r.stdout, state, "<STATE>")
	out = strings.ReplaceAll(out, cfg, "<CONFIG>")
	out = strings.ReplaceAll(out, "owner "+doctor.ExpectedOwner(), "owner <OWNER>")
	out = strings.ReplaceAll(out, strings.Join(config.Default().TLSNames(), ", "), "<TLS NAMES>")
	out = regexp.MustCompile(`\d+ MB free`).ReplaceAllString(out, "<N> MB free")
	testutil.Golden(t, "testdata/doctor/fresh-offline.txt", []byte(out))

	// --json says the same, as an array.
	r = runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, "--config", cfg, "doctor", "--offline", "--json")
	r.want(t, 0, nil, nil)
	var results []struct{ Name, Status, Detail, Fix string }
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	for _, res := range results {
		if res.Status == "FAIL" {
			t.Errorf("fresh install: %+v", res)
		}
	}
	// Doctor created nothing in the state directory.
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("doctor left files in the state directory: %v", entries)
	}
}

func TestDoctorBrokenConfig(t *testing.T) {
	t.Parallel()
	cfg := writeTemp(t, "config.yaml", "log:\n  level: loud\n")
	r := runBin(t, nil, "--config", cfg, "doctor", "--offline")
	r.want(t, 1, []string{"FAIL  config", `log.level: must be one of debug, info, warn, error; got "loud"`, "fix: fix what is listed"},
		[]string{"doctor: 1 check failed"})
	lines := doctorLines(t, r.stdout)
	if got := lines["state-dir"]; got != "SKIP not checked: config failed" {
		t.Errorf("state-dir after a broken config: %q", got)
	}
}

// TestDoctorPermissions: modes looser than docs/operations.md "Files and
// permissions" states fail with the chmod that fixes them.
func TestDoctorPermissions(t *testing.T) {
	t.Parallel()
	t.Run("state dir and CA key", func(t *testing.T) {
		t.Parallel()
		cfg, state := freshInstall(t)
		env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}
		runBin(t, env, "--config", cfg, "tls", "ca-cert").want(t, 0, []string{"BEGIN CERTIFICATE"}, nil)
		key := filepath.Join(state, statedir.LocalCADir, statedir.LocalCAKeyFile)
		for path, mode := range map[string]os.FileMode{state: 0o755, key: 0o644} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		r := runBin(t, env, "--config", cfg, "doctor", "--offline")
		r.want(t, 1, []string{
			state + " has mode 0755, want 0700", "fix: chmod 700 " + state,
			key + " has mode 0644, want 0600", "chmod 600 " + key,
		}, nil)
		lines := doctorLines(t, r.stdout)
		if !strings.HasPrefix(lines["state-dir"], "FAIL") || !strings.HasPrefix(lines["tls"], "FAIL") {
			t.Errorf("state-dir %q, tls %q: want both FAIL", lines["state-dir"], lines["tls"])
		}

		// After the fix, both pass and the CA is reported.
		for path, mode := range map[string]os.FileMode{state: 0o700, key: 0o600} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		r = runBin(t, env, "--config", cfg, "doctor", "--offline")
		r.want(t, 0, []string{"PASS  state-dir", `PASS  tls               local CA "duo-confidential local CA`}, nil)
	})
	t.Run("API key file readable by everyone", func(t *testing.T) {
		t.Parallel()
		_, state := freshInstall(t)
		key := writeTemp(t, "privatemode-api-key", "secret-key\n")
		cfg := writeTemp(t, "config.yaml", "privatemode:\n  api_key_file: "+key+"\n")
		r := runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, "--config", cfg, "doctor", "--offline")
		r.want(t, 1, []string{"FAIL  config", "accessible to every user", "chmod 600 " + key}, nil)
		if strings.Contains(r.stdout+r.stderr, "secret-key") {
			t.Error("doctor printed the key")
		}
		if err := os.Chmod(key, 0o640); err != nil {
			t.Fatal(err)
		}
		r = runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, "--config", cfg, "doctor", "--offline")
		r.want(t, 1, []string{"FAIL  key-files", key + " has mode 0640, want 0600", "fix: chmod 600 " + key}, nil)
		if err := os.Chmod(key, 0o600); err != nil {
			t.Fatal(err)
		}
		r = runBin(t, []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}, "--config", cfg, "doctor", "--offline")
		r.want(t, 0, []string{"PASS  key-files         privatemode.api_key_file: mode 0600"}, nil)
	})
}

// TestDoctorOnline runs doctor against a running `serve --sandbox` with the
// gateway, a demo GitLab and the local CA: every online check answers.
func TestDoctorOnline(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t)
	_, gl := startGitLab(t)
	const token = "doctor-test-proxy-token"
	cfg := writeTemp(t, "config.yaml", fmt.Sprintf(`outbound:
  ca_bundle: %s
proxy:
  listen: %s
  inbound_token_sha256: [%s]
gateway:
  listen: %s
  gitlab_url: %s
  models:
    default: %s
    code_completions: %s
  completion_format: suffix
`, writeTemp(t, "gitlab-ca.pem", string(gl.CertPEM)), freeAddr(t), bearer.Digest(token), freeAddr(t), gl.URL, sandbox.ModelChat, sandbox.ModelCode))
	state := t.TempDir()
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state, "DUO_CONFIDENTIAL_AGENT_PLATFORM_LISTEN=" + freeAddr(t)}
	serve := startProc(t, env, "--config", cfg, "serve", "--sandbox", dir, "--drain", "1s")

	// Doctor runs while the appliance is up; wait until the gateway says
	// it is ready, as an admin would after a start.
	parsed, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := localCAClient(t, state)
	_, port, _ := net.SplitHostPort(parsed.Gateway.Listen)
	serve.waitUntil(t, "the gateway to be ready", func() bool {
		resp, err := client.Get("https://localhost:" + port + "/monitoring/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	t.Run("without the proxy token", func(t *testing.T) {
		r := runBin(t, env, "--config", cfg, "doctor", "--sandbox", dir)
		lines := doctorLines(t, r.stdout)
		for _, name := range []string{"proxy-models", "proxy-completion"} {
			if !strings.HasPrefix(lines[name], "SKIP proxy.inbound_token_sha256 is set: pass --proxy-token") {
				t.Errorf("%s without a token: %q", name, lines[name])
			}
		}
	})
	t.Run("with the proxy token", func(t *testing.T) {
		r := runBin(t, append(env, config.EnvProxyToken+"="+token), "--config", cfg, "doctor", "--sandbox", dir)
		r.want(t, 0, nil, nil)
		lines := doctorLines(t, r.stdout)
		want := map[string]string{
			"config":           "PASS",
			"state-dir":        "PASS",
			"key-files":        "SKIP no secret files configured (--sandbox",
			"tls":              `PASS local CA "duo-confidential local CA`,
			"tls-proxy":        "PASS",
			"tls-gateway":      "PASS",
			"gitlab-keys":      "PASS " + gl.URL + ": 1 key (1 RSA) from " + gl.URL,
			"collateral":       "WARN",
			"trust-log":        "PASS",
			"receipts":         "PASS",
			"attestation":      "WARN",
			"proxy-ready":      "WARN",
			"proxy-models":     "PASS serves",
			"proxy-completion": "PASS model " + sandbox.ModelChat + " answered",
			"gateway-host":     "PASS HEAD https://",
			"gateway-healthz":  "PASS GET https://",
			"gateway-ready":    "PASS GET https://",
			// The test's local CA is in no system store: Workhorse would
			// not trust it, and doctor says so.
			"agent-tls":       "WARN",
			"agent-listtools": "PASS ListTools on",
			"gitlab-probes":   "SKIP need a GitLab-issued token",
		}
		for name, prefix := range want {
			if !strings.HasPrefix(lines[name], prefix) {
				t.Errorf("%s: %q, want it to start with %q", name, lines[name], prefix)
			}
		}
		for _, s := range []string{"ALPN http/1.1", "NOT CONFIDENTIAL", "accepted, tdx", "hash chain intact", "model_configuration%2Fcheck"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("report lacks %q:\n%s", s, r.stdout)
			}
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("report:\n%s", r.stdout)
		}
	})
	t.Run("appliance down", func(t *testing.T) {
		_ = serve.cmd.Process.Kill()
		serve.wait(t)
		r := runBin(t, env, "--config", cfg, "doctor", "--sandbox", dir)
		r.want(t, 1, []string{"FAIL  tls-proxy", "nothing answers on", "systemctl start duo-confidential"}, nil)
		if got := doctorLines(t, r.stdout)["proxy-ready"]; got != "SKIP not checked: tls-proxy failed" {
			t.Errorf("proxy-ready with the appliance down: %q", got)
		}
	})
}
