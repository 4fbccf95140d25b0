package build_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "packaging/systemd/duo-confidential.service"

// maxExposure is the highest `systemd-analyze security` score accepted
// (lower is better; packaging/README.md records the measured one).
const maxExposure = 2.0

// systemd-analyze verify accepts the unit. verify insists that ExecStart's
// binary exists, so it checks a copy pointing at the packaged binary's
// location inside a temporary directory.
func TestUnitVerify(t *testing.T) {
	need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	bin := filepath.Join(dir, "duo-confidential")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := repoFile(t, unitFile)
	if !strings.Contains(unit, "ExecStart=/usr/bin/duo-confidential ") {
		t.Fatal("ExecStart does not run /usr/bin/duo-confidential")
	}
	unit = strings.ReplaceAll(unit, "/usr/bin/duo-confidential", bin)
	path := filepath.Join(dir, "duo-confidential.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runErr("systemd-analyze", "verify", path)
	// verify also reports problems of other units it loads (the host's);
	// only lines about ours count.
	for _, line := range strings.Split(out+errOut, "\n") {
		if strings.Contains(line, "duo-confidential") {
			t.Errorf("verify: %s", line)
		}
	}
	if err != nil && !strings.Contains(out+errOut, "duo-confidential") {
		t.Logf("verify exited %v for other units:\n%s%s", err, out, errOut)
	}
}

func TestUnitSecurityScore(t *testing.T) {
	need(t, "systemd-analyze", "systemd")
	path := filepath.Join(packages(t).repo, unitFile)
	out := run(t, "systemd-analyze", "security", "--offline=yes", "--no-pager", path)
	m := regexp.MustCompile(`Overall exposure level for duo-confidential\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security: %.1f (limit %.1f)", score, maxExposure)
	if score > maxExposure {
		t.Errorf("exposure %.1f > %.1f:\n%s", score, maxExposure, out)
	}
}

// The directives the product depends on, so that a relaxation is a visible
// change to this table as well as to the unit.
func TestUnitDirectives(t *testing.T) {
	unit := repoFile(t, unitFile)
	got := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unexpected line %q", line)
		}
		got[k] = append(got[k], v)
	}
	want := []struct{ key, value string }{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"WatchdogSec", "30s"},
		{"ExecStart", "/usr/bin/duo-confidential serve --config /etc/duo-confidential/config.yaml"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
		{"TimeoutStopSec", "45s"}, // above serve --drain's 30s default
		{"User", "duo-confidential"},
		{"Group", "duo-confidential"},
		{"StateDirectory", "duo-confidential"},
		{"StateDirectoryMode", "0700"},
		{"UMask", "0077"},
		{"SyslogIdentifier", "duo-confidential"},
		{"NoNewPrivileges", "yes"},
		{"CapabilityBoundingSet", ""},
		{"AmbientCapabilities", ""},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"DevicePolicy", "closed"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectKernelLogs", "yes"},
		{"ProtectControlGroups", "yes"},
		{"ProtectClock", "yes"},
		{"ProtectHostname", "yes"},
		{"ProtectProc", "invisible"},
		{"ProcSubset", "pid"},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{"RestrictNamespaces", "yes"},
		{"RestrictRealtime", "yes"},
		{"RestrictSUIDSGID", "yes"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallArchitectures", "native"},
		{"SystemCallFilter", "@system-service"},
		{"SystemCallFilter", "~@privileged @resources"},
	}
	for _, w := range want {
		found := false
		for _, v := range got[w.key] {
			found = found || v == w.value
		}
		if !found {
			t.Errorf("%s=%s missing (have %q)", w.key, w.value, got[w.key])
		}
	}
	// IPAddressDeny would cut the service off from GitLab and Privatemode.
	for _, k := range []string{"IPAddressDeny", "PrivateNetwork", "DynamicUser"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s set; the service needs the network and a stable owner for its state", k)
		}
	}
}
