package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// receiptState writes a trust log and a receipt log of n receipts into a
// fresh state directory, as a running appliance would.
func receiptState(t *testing.T, n int) string {
	t.Helper()
	state := t.TempDir()
	tl, err := attest.OpenTrustLog(filepath.Join(state, statedir.TrustLogFile))
	if err != nil {
		t.Fatal(err)
	}
	e, err := tl.Append(&attest.Result{Verdict: attest.VerdictAccepted, Platform: "tdx", ManifestSHA256: "m1",
		EvidenceSHA256: "e1", VerifiedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), TCBStatus: "UpToDate"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := receipts.Open(receipts.Options{Dir: filepath.Join(state, statedir.ReceiptsDir)})
	if err != nil {
		t.Fatal(err)
	}
	link := receipts.TrustLink{Seq: e.Seq, Hash: receipts.TrustHash(e.Hash)}
	for i := range n {
		l.Record(receipts.Receipt{Time: time.Date(2026, 3, 2+i, 9, 0, 0, 0, time.UTC), Route: "chat", Model: "m", Status: 200,
			RequestSHA256: receipts.Digest([32]byte{byte(i)}), ResponseSHA256: receipts.Digest([32]byte{9, byte(i)}), SecretID: "s", Trust: &link})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return state
}

func TestReceiptsVerifyExportCLI(t *testing.T) {
	state := receiptState(t, 5)
	runBin(t, nil, "receipts", "verify", "--state-dir", state).
		want(t, 0, []string{"receipts 1 to 5", "1 signed checkpoints verified", "entry 1", "platform tdx, TCB UpToDate", "5 requests", "Result: VERIFIED"}, nil)
	runBin(t, nil, "receipts", "verify", "--state-dir", state, "--from", "2026-03-03", "--to", "2026-03-05").
		want(t, 0, []string{"2 receipts", "Result: VERIFIED"}, nil)

	// Export, then verify on a clean directory with only the bundle and
	// the public key the operator handed over.
	clean := t.TempDir()
	bundle := filepath.Join(clean, "receipts-bundle.json")
	runBin(t, nil, "receipts", "export", "--state-dir", state, "-o", bundle).want(t, 0, []string{"Wrote ", "signed by receipt key"}, nil)
	pub, err := os.ReadFile(filepath.Join(state, statedir.ReceiptsDir, receipts.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clean, "signing.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	runBin(t, nil, "receipts", "verify", "--bundle", bundle, "--public-key", filepath.Join(clean, "signing.pub")).
		want(t, 0, []string{"bundle ", "receipts 1 to 5", "Result: VERIFIED"}, nil)

	// A tampered receipt file fails verification with exit status 1.
	files, _ := filepath.Glob(filepath.Join(state, statedir.ReceiptsDir, "receipts-*.jsonl"))
	b, _ := os.ReadFile(files[0])
	b = bytes.Replace(b, []byte(`"status":200`), []byte(`"status":201`), 1)
	_ = os.WriteFile(files[0], b, 0o600)
	runBin(t, nil, "receipts", "verify", "--state-dir", state).
		want(t, 1, []string{"PROBLEM:", "altered", "Result: FAILED"}, []string{"problem(s) found"})
}
