package attest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTrustLogEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust-log.jsonl")
	l, err := OpenTrustLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	steps := []func() error{
		func() error { _, err := l.Append(acceptedResult("m1", "e1", t0)); return err },
		func() error {
			_, err := l.AppendEvent("gitlab-drift", "DUO_CHAT vendored", t0.Add(time.Minute))
			return err
		},
		// The same drift seen again is not re-recorded.
		func() error {
			_, err := l.AppendEvent("gitlab-drift", "DUO_CHAT vendored", t0.Add(6*time.Minute))
			return err
		},
		// Re-attestation with the same evidence is still recorded once, events in between or not.
		func() error { _, err := l.Append(acceptedResult("m1", "e1", t0.Add(time.Hour))); return err },
		func() error { _, err := l.AppendEvent("gitlab-drift", "", t0.Add(2*time.Hour)); return err },
		func() error { _, err := l.Append(acceptedResult("m2", "e2", t0.Add(3*time.Hour))); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 || entries[1].Event != "gitlab-drift" || entries[1].Detail != "DUO_CHAT vendored" || entries[2].Detail != "" || entries[3].ManifestSHA256 != "m2" {
		t.Fatalf("entries %+v", entries)
	}
	// Rollback checks look at attestations only: m1 was replaced by m2.
	if err := l.CheckRollback("m1", nil); !errors.Is(err, ErrRollback) {
		t.Errorf("rollback to m1: %v", err)
	}
	if err := l.CheckRollback("m2", nil); err != nil {
		t.Errorf("current manifest: %v", err)
	}
	// An edited event breaks the chain like an edited attestation.
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "DUO_CHAT vendored", "nothing happened", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Entries(); !errors.Is(err, ErrTrustLog) {
		t.Errorf("tampered event: err = %v", err)
	}
	if _, err := l.AppendEvent("", "x", t0); err == nil {
		t.Error("an unnamed event was recorded")
	}
}
