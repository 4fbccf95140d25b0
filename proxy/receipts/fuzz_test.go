package receipts

import (
	"testing"
)

// FuzzVerifyFile feeds arbitrary bytes to the receipt reader as one file:
// it must never panic, and it must not report a damaged file as clean
// unless every line it counted verified.
func FuzzVerifyFile(f *testing.F) {
	f.Add([]byte(`{"kind":"start","seq":0,"prev":"","t":"2026-03-01T10:00:00Z"}` + "\n"))
	f.Add([]byte("{\"seq\":1,\"h\":\"x\"}\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := VerifyFiles([]NamedFile{{Name: "f", Content: string(data)}}, VerifyOptions{})
		if r.ProblemCount < len(r.Problems) {
			t.Fatalf("problem count %d below listed %d", r.ProblemCount, len(r.Problems))
		}
		if r.Receipts > 0 && r.OK() {
			t.Fatal("receipts verified without any checkable checkpoint (no key given)")
		}
		_, _, _ = VerifyBundle(data, nil, VerifyOptions{})
	})
}
