package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTool writes an executable shell script named name into dir.
func fakeTool(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runSmokeTest runs smoke-test.sh with every host tool replaced by a fake in
// a private PATH directory: qemu's behaviour per accelerator is what the
// case gives, curl never answers, so the script always ends by timing out or
// failing; what the test reads is which accelerators qemu was started with
// and what the script said.
func runSmokeTest(t *testing.T, qemuBody string, env ...string) (qemuCalls []string, output string, err error) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "qemu-calls")
	fakeTool(t, bin, "qemu-system-x86_64", `echo "$*" >>"`+calls+`"`+"\n"+qemuBody)
	fakeTool(t, bin, "qemu-img", "exit 0")
	fakeTool(t, bin, "mkfs.vfat", "exit 0")
	fakeTool(t, bin, "mcopy", "exit 0")
	fakeTool(t, bin, "curl", "exit 7")
	image := filepath.Join(dir, "image.qcow2")
	kvm := filepath.Join(dir, "kvm")
	for _, f := range []string{image, kvm} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// bash, sleep, grep, … come from the system PATH after the fakes.
	cmd := exec.Command("bash", "smoke-test.sh", image)
	cmd.Env = append([]string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin",
		"KVM_DEVICE=" + kvm,
		"TIMEOUT=1",
		"POLL_SECONDS=0.2",
	}, env...)
	out, err := cmd.CombinedOutput()
	raw, _ := os.ReadFile(calls)
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		switch {
		case strings.Contains(line, "-accel kvm"):
			qemuCalls = append(qemuCalls, "kvm")
		case strings.Contains(line, "-accel tcg"):
			qemuCalls = append(qemuCalls, "tcg")
		case line != "":
			qemuCalls = append(qemuCalls, "other")
		}
	}
	return qemuCalls, string(out), err
}

// kvmAborts is a qemu that dies at once under KVM the way nested KVM did on a
// CI machine (an MSR write refused, then an assertion), and under TCG runs
// until killed.
const kvmAborts = `case "$*" in
*"-accel kvm"*) echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0" >&2
  echo "qemu-system-x86_64: ../target/i386/kvm/kvm.c: kvm_buf_set_msrs: Assertion failed." >&2
  exit 134 ;;
esac
exec sleep 30`

func TestSmokeTestFallsBackToTCG(t *testing.T) {
	cases := []struct {
		name      string
		qemu      string
		env       []string
		wantCalls string
		wantOut   string
	}{
		{
			name:      "early exit under automatic KVM retries under TCG",
			qemu:      kvmAborts,
			wantCalls: "kvm tcg",
			wantOut:   "falling back to TCG",
		},
		{
			name: "KVM internal error with a hanging qemu retries under TCG",
			qemu: `case "$*" in
*"-accel kvm"*) echo "KVM internal error. Suberror: 1" >&2 ;;
esac
exec sleep 30`,
			wantCalls: "kvm tcg",
			wantOut:   "falling back to TCG",
		},
		{
			name:      "ACCEL=kvm asked for is never replaced by TCG",
			qemu:      kvmAborts,
			env:       []string{"ACCEL=kvm"},
			wantCalls: "kvm",
			wantOut:   "KVM failed (ACCEL=kvm was asked for)",
		},
		{
			name:      "ACCEL=tcg never tries KVM",
			qemu:      "exec sleep 30",
			env:       []string{"ACCEL=tcg"},
			wantCalls: "tcg",
			wantOut:   "no healthy gateway within 1s (tcg)",
		},
		{
			name:      "qemu exiting under TCG is a failure, not a loop",
			qemu:      `echo "qemu: could not load kernel" >&2; exit 1`,
			wantCalls: "kvm tcg",
			wantOut:   "qemu exited",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, out, err := runSmokeTest(t, tc.qemu, tc.env...)
			if err == nil {
				t.Fatalf("smoke-test.sh passed with a fake qemu and no gateway:\n%s", out)
			}
			if got := strings.Join(calls, " "); got != tc.wantCalls {
				t.Errorf("qemu started with %q, want %q\n%s", got, tc.wantCalls, out)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out)
			}
		})
	}
}
