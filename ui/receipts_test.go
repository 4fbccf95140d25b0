package ui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

func TestReceiptsShownAndMeasured(t *testing.T) {
	st := &Receipts{
		Stats: receipts.Stats{Written: 42, Failures: 3, Checkpoints: 5, QueueDepth: 7, QueueCapacity: 8192, Failing: true,
			LastError: "write receipts-1.jsonl: no space left on device", OnFailure: "refuse", KeyID: "a889bfb79d31f04e"},
		Dir: "/var/lib/duo-confidential/receipts", PublicKeyFile: "/var/lib/duo-confidential/receipts/signing.pub",
		Recent: []receipts.Receipt{{Seq: 42, Time: t0, Route: "chat", Feature: "duo_chat", Model: "m", Status: 200, Outcome: "cut",
			RequestSHA256: "REQDIGEST0123456789", Trust: &receipts.TrustLink{Seq: 3, Hash: "TRUSTHASH0123456789"}}},
		Verification: &ReceiptsVerified{At: t0, OK: false, Receipts: 40, Checkpoints: 5, Problems: []string{"receipts-1.jsonl:7: receipt 7 does not match its chain hash: it was altered"}},
	}
	f := newFixture(t, fixtureOptions{sources: func(s *Sources) { s.Receipts = func() *Receipts { c := *st; return &c } }})
	c := f.login(testToken)
	r := f.do(c, http.MethodGet, "/admin/attestation", nil)
	for _, want := range []string{"Request receipts", "not being written", "no space left on device", "42 written since start", "a889bfb79d31f04e",
		"verification failed", "does not match its chain hash", "duo_chat", ">cut<", "REQDIGEST"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("attestation page lacks %q", want)
		}
	}
	m := f.do(c, http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+testToken)
	for _, want := range []string{"duo_receipts_written_total 42", "duo_receipts_failures_total 3", "duo_receipts_queue_depth 7",
		"duo_receipts_checkpoints_total 5", "duo_receipts_failing 1", "duo_receipts_verified_ok 0"} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	s := f.do(c, http.MethodGet, "/api/status", nil, "Authorization", "Bearer "+testToken)
	var doc struct {
		Receipts *Receipts `json:"receipts"`
	}
	if err := json.Unmarshal([]byte(s.body), &doc); err != nil || doc.Receipts == nil || doc.Receipts.Written != 42 ||
		len(doc.Receipts.Recent) != 1 || doc.Receipts.Recent[0].Seq != 42 {
		t.Errorf("status lacks receipts: %s", s.body)
	}
	// Receipts off: no section, no metrics.
	f2 := newFixture(t, fixtureOptions{})
	if r := f2.do(f2.login(testToken), http.MethodGet, "/admin/attestation", nil); strings.Contains(r.body, "Request receipts") {
		t.Error("receipts section without receipts")
	}
}
