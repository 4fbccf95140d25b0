package attest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func acceptedResult(manifest, evidence string, at time.Time) *Result {
	return &Result{
		Platform:       PlatformTDX,
		Verdict:        VerdictAccepted,
		VerifiedAt:     at,
		ManifestSHA256: manifest,
		EvidenceSHA256: evidence,
		TCB:            []TCBComponent{{Name: "TDX TCB level", Status: "UpToDate"}},
	}
}

func TestTrustLogAppendAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "trust-log.jsonl")
	l, err := OpenTrustLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i, r := range []*Result{
		acceptedResult("m1", "e1", t0),
		acceptedResult("m1", "e1", t0.Add(time.Hour)), // re-attestation, same evidence: not re-recorded
		acceptedResult("m1", "e2", t0.Add(2*time.Hour)),
		acceptedResult("m2", "e3", t0.Add(3*time.Hour)),
	} {
		if _, err := l.Append(r); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("got %d entries, want 3 (duplicate acceptance recorded once)", len(entries))
	}
	if entries[2].Prev != entries[1].Hash || entries[0].Prev != "" {
		t.Errorf("entries are not chained: %+v", entries)
	}
	if entries[0].TCBStatus != "UpToDate" {
		t.Errorf("TCB status %q, want UpToDate", entries[0].TCBStatus)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("trust log mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := l.Append(&Result{Verdict: VerdictRejected}); !errors.Is(err, ErrTrustLog) {
		t.Errorf("appending a rejected result: err = %v, want ClassTrustLog", err)
	}
}

func TestTrustLogTamperDetected(t *testing.T) {
	cases := map[string]func(string) string{
		"edited manifest hash": func(s string) string {
			return strings.Replace(s, `"manifest_sha256":"m1"`, `"manifest_sha256":"mX"`, 1)
		},
		"entry removed": func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return lines[0] + lines[2]
		},
		"entries swapped": func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return lines[1] + lines[0] + lines[2]
		},
		"garbage line":  func(s string) string { return s + "{not json\n" },
		"unknown field": func(s string) string { return strings.Replace(s, `{"seq":1`, `{"extra":1,"seq":1`, 1) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "trust-log.jsonl")
			l, err := OpenTrustLog(path)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
			for i, m := range []string{"m1", "m2", "m3"} {
				if _, err := l.Append(acceptedResult(m, "e"+m, t0.Add(time.Duration(i)*time.Hour))); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, []byte(mutate(string(b))), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenTrustLog(path); !errors.Is(err, ErrTrustLog) {
				t.Fatalf("OpenTrustLog on a tampered log: err = %v, want ClassTrustLog", err)
			}
			if _, err := l.Append(acceptedResult("m4", "e4", t0.Add(5*time.Hour))); !errors.Is(err, ErrTrustLog) {
				t.Fatalf("Append to a tampered log: err = %v, want ClassTrustLog", err)
			}
		})
	}
}

func TestCheckRollback(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	l, err := OpenTrustLog(filepath.Join(t.TempDir(), "trust-log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckRollback("m1", nil); err != nil {
		t.Fatalf("empty log: %v", err)
	}
	for i, m := range []string{"m1", "m2"} {
		if _, err := l.Append(acceptedResult(m, "e"+m, t0.Add(time.Duration(i)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		manifest string
		approved []string
		wantErr  bool
	}{
		{"current manifest", "m2", nil, false},
		{"new manifest", "m3", nil, false},
		{"superseded manifest", "m1", nil, true},
		{"superseded but approved", "m1", []string{"M1"}, false},
		{"approval for another manifest", "m1", []string{"m9"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := l.CheckRollback(tc.manifest, tc.approved)
			if tc.wantErr != (err != nil) {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, ErrRollback) {
				t.Fatalf("err = %v, want ClassRollback", err)
			}
			if tc.wantErr && !strings.Contains(err.Error(), "approved_rollbacks") {
				t.Errorf("error %q does not say how to approve", err)
			}
		})
	}
}

// An acceptance by operator policy is in the hash-chained entry.
func TestTrustLogRecordsPolicyAcceptance(t *testing.T) {
	res := &Result{Platform: PlatformTDX, Verdict: VerdictAccepted, TCBStatus: TCBSWHardeningNeeded,
		TCBAdvisories: []string{"INTEL-SA-00615"}, TCBAcceptedBy: "TDX TCB level: status SWHardeningNeeded accepted by operator policy"}
	got := trustTCBStatus(res)
	for _, want := range []string{"SWHardeningNeeded", "INTEL-SA-00615", "accepted by operator policy"} {
		if !strings.Contains(got, want) {
			t.Fatalf("trust log TCB status %q lacks %q", got, want)
		}
	}
}
