package appliance_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// TestReceiptPerRequestType sends every kind of inference request through
// the proxy and checks that each leaves exactly one receipt, linked to the
// trust-log entry of the attestation it was sent under, that the log
// verifies after shutdown, and that no prompt, user id or answer is in any
// receipt file.
func TestReceiptPerRequestType(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	const (
		canaryPrompt = "CANARY-receipt-prompt-5d1e"
		canaryUser   = "CANARY-user-4711"
		canaryInst   = "instance-uuid-1"
	)
	meta := []string{receipts.HeaderFeature, "code_suggestions", receipts.HeaderInstance, canaryInst,
		receipts.HeaderUser, canaryUser, receipts.HeaderWorkflow, "wf-42"}
	body := func(m map[string]any) string { b, _ := json.Marshal(m); return string(b) }
	msgs := []map[string]string{{"role": "user", "content": canaryPrompt}}
	cases := []struct {
		path, route, body, outcome string
		stream                     bool
	}{
		{"/v1/chat/completions", "chat", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4}), "", false},
		{"/v1/chat/completions", "chat", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4, "stream": true}), receipts.OutcomeComplete, true},
		{"/v1/completions", "completions", body(map[string]any{"model": sandbox.ModelCode, "prompt": canaryPrompt, "max_tokens": 4}), "", false},
		{"/v1/completions", "completions", body(map[string]any{"model": sandbox.ModelCode, "prompt": canaryPrompt, "max_tokens": 4, "stream": true}), receipts.OutcomeComplete, true},
		{"/v1/embeddings", "embeddings", body(map[string]any{"model": sandbox.ModelEmbed, "input": canaryPrompt}), "", false},
		{"/v1/messages", "messages", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4}), "", false},
		{"/v1/messages", "messages", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4, "stream": true}), receipts.OutcomeComplete, true},
	}
	for _, c := range cases {
		r := e.post(c.path, c.body, append([]string{"anthropic-version", "2023-06-01"}, meta...)...)
		if r.status != http.StatusOK || bytes.Contains(r.body, []byte(`"error"`)) {
			t.Fatalf("%s: HTTP %d %s", c.path, r.status, r.body)
		}
	}
	// A request refused before anything is sent leaves no receipt.
	if r := e.post("/v1/chat/completions", `{"messages":[]}`); r.status != http.StatusBadRequest {
		t.Fatalf("no model: HTTP %d", r.status)
	}
	log := e.app.Receipts()
	e.waitFor("receipts to be written", func() bool { return log.Stats().Written >= uint64(len(cases)) })
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	dir := log.Dir()
	tl, err := attest.OpenTrustLog(filepath.Join(filepath.Dir(dir), statedir.TrustLogFile))
	if err != nil {
		t.Fatal(err)
	}
	trust, err := tl.Entries()
	if err != nil || len(trust) == 0 {
		t.Fatalf("trust log: %d entries, %v", len(trust), err)
	}
	pub, err := receipts.ReadPublicKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := receipts.VerifyDir(dir, receipts.VerifyOptions{PublicKey: pub, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Receipts != uint64(len(cases)) || rep.Unsigned != 0 {
		t.Fatalf("report: %+v", rep)
	}
	if os.Getenv("SHOW_RECEIPTS") != "" {
		fs, _ := filepath.Glob(filepath.Join(dir, "receipts-*"))
		b, _ := os.ReadFile(fs[0])
		t.Logf("%s", b)
	}
	last := trust[len(trust)-1]
	if rep.TrustLinks[last.Seq] != uint64(len(cases)) {
		t.Fatalf("links %v, want all %d on entry %d", rep.TrustLinks, len(cases), last.Seq)
	}
	recent := log.Recent() // newest first
	if len(recent) != len(cases) {
		t.Fatalf("%d recent receipts", len(recent))
	}
	for i, c := range cases {
		r := recent[len(cases)-1-i]
		if r.Route != c.route || r.Status != 200 || r.Outcome != c.outcome ||
			r.RequestSHA256 == "" || r.ResponseSHA256 == "" || r.SecretID == "" || r.Trust == nil || r.Trust.Hash != receipts.TrustHash(last.Hash) ||
			r.Feature != "code_suggestions" || r.Instance != canaryInst || r.Workflow != "wf-42" ||
			r.UserHash != receipts.HashUser(log.UserKey(), canaryInst, canaryUser) {
			t.Errorf("%s receipt: %+v", c.path, r)
		}
	}
	// Canary: no content and no user id in any receipt file.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, c := range []string{canaryPrompt, canaryUser, "CANARY", "Sandbox reply"} {
			if strings.Contains(string(b), c) {
				t.Errorf("%s contains %q", filepath.Base(f), c)
			}
		}
	}
}
