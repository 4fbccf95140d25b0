package receipts

import (
	"testing"
)

// FuzzVerifyFile feeds arbitrary bytes to the receipt reader as one file:
// it must never panic, and without a public key no checkpoint may count as verified.
func FuzzVerifyFile(f *testing.F) {
	f.Add([]byte(`{"kind":"start","seq":0,"prev":"","t":"2026-03-01T10:00:00Z"}` + "\n"))
	f.Add([]byte("{\"seq\":1,\"h\":\"x\"}\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := VerifyFiles([]NamedFile{{Name: "f", Content: string(data)}}, VerifyOptions{})
		if r.ProblemCount < len(r.Problems) {
			t.Fatalf("problem count %d below listed %d", r.ProblemCount, len(r.Problems))
		}
		if r.OK() && r.Checkpoints != 0 {
			t.Fatal("a checkpoint counted as verified without a public key")
		}
		_, _, _ = VerifyBundle(data, nil, VerifyOptions{})
	})
}
