package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
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

// TestGatewayReceipts drives GitLab's Duo calls through the real binary and
// checks each model call left exactly one receipt naming its feature, the
// GitLab instance and a keyed hash of the user (never the id itself), and
// that the log verifies after SIGTERM.
func TestGatewayReceipts(t *testing.T) {
	e := startGatewayEnv(t, false)
	e.waitReady()
	calls := []struct{ path, body, feature string }{
		{"/v2/code/completions", `{"prompt_version":1,"current_file":{"file_name":"test.rb","content_above_cursor":"def hello_world","content_below_cursor":"\nend\n"}}`, "code_completions"},
		{"/v4/code/suggestions", `{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"fib.py","content_above_cursor":"# CANARY fibonacci\n","content_below_cursor":"","language_identifier":"python","stream":true,"prompt_enhancer":{"user_instruction":"write fibonacci"}}}],"stream":true}`, "code_suggestions_v4"},
		{"/v2/chat/agent", `{"messages":[{"role":"user","content":"CANARY-chat-question"}]}`, "chat_agent"},
	}
	for _, c := range calls {
		if status, _, b := e.post(c.path, c.body); status != 200 {
			t.Fatalf("%s: HTTP %d %s", c.path, status, b)
		}
	}
	_ = e.serve.cmd.Process.Signal(syscall.SIGTERM)
	if code := e.serve.wait(t); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, e.serve.stderr.String())
	}
	r := runBin(t, nil, "receipts", "verify", "--state-dir", e.state, "--json")
	r.want(t, 0, nil, nil)
	var rep struct {
		Receipts uint64 `json:"receipts"`
		Problems []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Receipts < uint64(len(calls)) {
		t.Fatalf("report %s (%v)", r.stdout, err)
	}
	files, _ := filepath.Glob(filepath.Join(e.state, statedir.ReceiptsDir, "receipts-*.jsonl"))
	var all []byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all = append(all, b...)
	}
	user := e.gitlab.Headers("", gitlabtest.TokenOptions{}).Get("X-Gitlab-Global-User-Id")
	if user == "" || bytes.Contains(all, []byte(user)) || bytes.Contains(all, []byte("CANARY")) {
		t.Fatalf("user id %q or content in the receipts:\n%s", user, all)
	}
	inst := e.gitlab.Headers("", gitlabtest.TokenOptions{}).Get("X-Gitlab-Instance-Id")
	// The operator finds the user's receipts by the keyed hash.
	hr := runBin(t, nil, "receipts", "user-hash", "--state-dir", e.state, "--instance", inst, "--user", user)
	hr.want(t, 0, nil, nil)
	hash := strings.TrimSpace(hr.stdout)
	for _, c := range calls {
		n := bytes.Count(all, []byte(`"feature":"`+c.feature+`","instance":"`+inst+`","user":"`+hash+`"`))
		if n != 1 {
			t.Errorf("%s: %d receipts with feature, instance and user hash, want 1:\n%s", c.feature, n, all)
		}
	}
}

// TestReceiptsSurviveKill kills the appliance (SIGKILL: no drain, no final
// checkpoint) after traffic and checks that what was written verifies: the
// receipts after the last checkpoint are covered by the chain, a write cut
// off mid-line would be reported as torn, and nothing is a problem.
func TestReceiptsSurviveKill(t *testing.T) {
	e := startGatewayEnv(t, false)
	e.waitReady()
	for range 3 {
		if status, _, b := e.post("/v2/code/completions", `{"prompt_version":1,"current_file":{"file_name":"a.go","content_above_cursor":"func f() {"}}`); status != 200 {
			t.Fatalf("HTTP %d %s", status, b)
		}
	}
	// Receipts are written asynchronously: wait until the three are in a file.
	e.serve.waitUntil(t, "three receipts on disk", func() bool {
		files, _ := filepath.Glob(filepath.Join(e.state, statedir.ReceiptsDir, "receipts-*.jsonl"))
		n := 0
		for _, f := range files {
			b, _ := os.ReadFile(f)
			n += bytes.Count(b, []byte(`"route":`))
		}
		return n >= 3
	})
	_ = e.serve.cmd.Process.Kill()
	e.serve.wait(t)
	r := runBin(t, nil, "receipts", "verify", "--state-dir", e.state)
	r.want(t, 0, []string{"receipts 1 to 3", "covered by the hash chain only", "Result: VERIFIED"}, nil)
}

// checkAgentReceipts checks, on a running appliance, that each of the
// posts inference requests the backend saw left exactly one receipt, that
// the Agent Platform's carry the flow, a workflow id, the GitLab instance
// and a keyed user hash, that none holds any of secrets, and that the log
// verifies.
func checkAgentReceipts(t *testing.T, state string, posts int, secrets ...string) {
	t.Helper()
	var all []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		all = all[:0]
		files, _ := filepath.Glob(filepath.Join(state, statedir.ReceiptsDir, "receipts-*.jsonl"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			all = append(all, b...)
		}
		if bytes.Count(all, []byte(`"route":`)) >= posts || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := bytes.Count(all, []byte(`"route":`)); n != posts {
		t.Errorf("%d receipts for %d inference requests", n, posts)
	}
	agent := 0
	for _, line := range bytes.Split(all, []byte("\n")) {
		var r receipts.Receipt
		if !bytes.Contains(line, []byte(`"route":`)) || json.Unmarshal(line, &r) != nil {
			continue
		}
		if strings.HasPrefix(r.Feature, "agent_platform/") {
			agent++
			if r.Workflow == "" || r.Instance == "" || r.UserHash == "" || r.Trust == nil || r.RequestSHA256 == "" {
				t.Errorf("agent receipt lacks fields: %s", line)
			}
		}
	}
	if agent == 0 {
		t.Errorf("no Agent Platform receipt in:\n%s", all)
	}
	for _, s := range secrets {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("%q is in a receipt file", s)
		}
	}
	runBin(t, nil, "receipts", "verify", "--state-dir", state).want(t, 0, []string{"Result: VERIFIED"}, nil)
}
