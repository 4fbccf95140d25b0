package appliance_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// makeReadOnly makes dir unwritable until the returned undo (also run at
// the end of the test): mode 0500 for an ordinary user; root ignores
// modes, so for root a read-only bind mount of dir onto itself. The test
// is skipped if neither is possible.
func makeReadOnly(t *testing.T, dir string) (undo func()) {
	t.Helper()
	var once bool
	var restore func() error
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		restore = func() error { return os.Chmod(dir, 0o700) }
	} else {
		if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
			t.Skipf("root cannot bind-mount here (%v): no way to make %s read-only", err, dir)
		}
		if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			_ = syscall.Unmount(dir, 0)
			t.Skipf("cannot remount %s read-only: %v", dir, err)
		}
		restore = func() error { return syscall.Unmount(dir, 0) }
	}
	undo = func() {
		if once {
			return
		}
		once = true
		if err := restore(); err != nil {
			t.Errorf("make %s writable again: %v", dir, err)
		}
	}
	t.Cleanup(undo)
	if f, err := os.CreateTemp(dir, "probe-"); err == nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		undo()
		t.Skipf("%s is still writable", dir)
	}
	return undo
}

// TestTrustLogWriteFailureFailsClosed makes the state directory read-only
// while the appliance serves: the next attestation cannot be recorded in
// the trust log, so it does not count as accepted. The secret is revoked,
// requests are refused before anything reaches the backend, and readiness
// names the trust log. Once the directory is writable again, service
// resumes and the acceptance is recorded.
func TestTrustLogWriteFailureFailsClosed(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	e.chatOK(t, "start")
	path := trustLogPath(t, e)
	entries := trustEntries(t, path)
	undo := makeReadOnly(t, filepath.Dir(path))

	e.app.Reattest()
	// Receipts live in the same directory and may fail first (their
	// writer is asynchronous); readiness names every missing part, so
	// wait for the trust log's to appear.
	e.waitFor("the appliance to fail closed on the unwritable trust log", func() bool {
		ok, reason := e.app.Ready()
		return !ok && strings.Contains(reason, "trust log")
	})
	_, reason := e.app.Ready()
	if !strings.Contains(reason, filepath.Dir(path)) {
		t.Errorf("readiness reason %q does not name the trust log and its directory", reason)
	}
	before := e.lastSeq()
	for _, stream := range []bool{false, true} {
		e.post("/v1/chat/completions", chatBody("must not be sent", stream, 4)).
			wantError(t, http.StatusServiceUnavailable, "not available")
	}
	if n := len(e.inferenceRequests("/v1/chat/completions", before)); n != 0 {
		t.Errorf("%d requests reached a backend whose acceptance was not recorded", n)
	}
	if got := trustEntries(t, path); got != entries {
		t.Errorf("the trust log changed while read-only: %d entries, had %d", got, entries)
	}

	undo()
	e.app.Reattest()
	e.waitReady()
	e.chatOK(t, "the state directory is writable again")
	if got := trustEntries(t, path); got <= entries {
		t.Errorf("the acceptance after recovery was not recorded: %d entries, had %d", got, entries)
	}
}

// trustLogPath is where the appliance says it records acceptances: the
// detail of the "recorded in trust log" check of its last attestation.
func trustLogPath(t *testing.T, e *env) string {
	t.Helper()
	st := e.app.Status()
	if st == nil || st.Attestation == nil {
		t.Fatal("no attestation in the status")
	}
	for _, c := range st.Attestation.Checks {
		if c.Name == "recorded in trust log" && c.OK && c.Detail != "" {
			return c.Detail
		}
	}
	t.Fatalf("the last attestation was not recorded in a trust log: %+v", st.Attestation.Checks)
	return ""
}

// trustEntries counts the lines of the trust log.
func trustEntries(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}
