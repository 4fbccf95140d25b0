package appliance_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	audio, audioType := transcriptionForm(t, canaryPrompt)
	cases := []struct {
		path, route, body, outcome string
		stream                     bool
		contentType                string // "": JSON
	}{
		{"/v1/chat/completions", "chat", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4}), "", false, ""},
		{"/v1/chat/completions", "chat", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4, "stream": true}), receipts.OutcomeComplete, true, ""},
		{"/v1/completions", "completions", body(map[string]any{"model": sandbox.ModelCode, "prompt": canaryPrompt, "max_tokens": 4}), "", false, ""},
		{"/v1/completions", "completions", body(map[string]any{"model": sandbox.ModelCode, "prompt": canaryPrompt, "max_tokens": 4, "stream": true}), receipts.OutcomeComplete, true, ""},
		{"/v1/embeddings", "embeddings", body(map[string]any{"model": sandbox.ModelEmbed, "input": canaryPrompt}), "", false, ""},
		{"/v1/messages", "messages", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4}), "", false, ""},
		{"/v1/messages", "messages", body(map[string]any{"model": sandbox.ModelChat, "messages": msgs, "max_tokens": 4, "stream": true}), receipts.OutcomeComplete, true, ""},
		{"/v1/audio/transcriptions", "transcriptions", audio, "", false, audioType},
	}
	for _, c := range cases {
		hdr := append([]string{"anthropic-version", "2023-06-01"}, meta...)
		if c.contentType != "" {
			hdr = append(hdr, "Content-Type", c.contentType)
		}
		r := e.post(c.path, c.body, hdr...)
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

// transcriptionForm is a multipart transcription request whose audio,
// file name and prompt field carry canary, and its Content-Type.
func transcriptionForm(t *testing.T, canary string) (body, contentType string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, f := range [][2]string{{"model", sandbox.ModelWhisper}, {"prompt", canary}, {"response_format", "json"}} {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", canary+".wav")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(append(wavFile(800), canary...))
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String(), mw.FormDataContentType()
}

// fullDisk is a receipt file whose writes fail while full is set, the way
// a full disk fails them: part of the data written, then ENOSPC.
type fullDisk struct {
	f    *os.File
	full *atomic.Bool
}

func (d fullDisk) Write(p []byte) (int, error) {
	if d.full.Load() {
		n, _ := d.f.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return d.f.Write(p)
}
func (d fullDisk) Sync() error            { return d.f.Sync() }
func (d fullDisk) Truncate(n int64) error { return d.f.Truncate(n) }
func (d fullDisk) Close() error           { return d.f.Close() }

// TestReceiptsFullDisk fills the disk under a running appliance: with
// on_failure refuse, new requests get 503 and nothing is sent while
// receipts cannot be written (and readiness says why); with warn they are
// served. Either way, once the disk has room, every answered request has
// exactly one receipt and the log verifies.
func TestReceiptsFullDisk(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"refuse", "warn"} {
		t.Run(mode, func(t *testing.T) {
			var full atomic.Bool
			e := startEnv(t, envOptions{ReceiptsOnFailure: mode, ReceiptFiles: func(p string) (receipts.File, error) {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
				if err != nil {
					return nil, err
				}
				return fullDisk{f, &full}, nil
			}})
			log := e.app.Receipts()
			body := chatBody("receipt disk test", false, 4)
			answered := 0
			ask := func(want int) {
				t.Helper()
				r := e.post("/v1/chat/completions", body)
				if r.status != want {
					t.Fatalf("HTTP %d, want %d: %s", r.status, want, r.body)
				}
				if r.status == 200 {
					answered++
				}
			}
			ask(200)
			e.waitFor("the first receipt", func() bool { return log.Stats().Written == 1 })
			full.Store(true)
			ask(200) // its receipt is the write that finds the disk full
			e.waitFor("receipts to fail", func() bool { return log.Stats().Failing })
			before := e.lastSeq()
			if mode == "refuse" {
				r := e.post("/v1/chat/completions", body)
				r.wantError(t, http.StatusServiceUnavailable, "receipts.on_failure: refuse")
				if n := len(e.inferenceRequests("/v1/chat/completions", before)); n != 0 {
					t.Fatalf("%d requests reached the backend while receipts could not be written", n)
				}
				if ok, why := e.app.Ready(); ok || !strings.Contains(why, "no space left on device") {
					t.Fatalf("readiness %v %q", ok, why)
				}
			} else {
				ask(200)
				if ok, _ := e.app.Ready(); !ok {
					t.Fatal("warn mode: not ready")
				}
			}
			if log.Stats().Failures == 0 {
				t.Fatal("failures not counted")
			}
			full.Store(false)
			e.waitFor("receipts to be written again", func() bool { return !log.Stats().Failing })
			ask(200)
			e.waitFor("every receipt", func() bool { return log.Stats().Written == uint64(answered) })
			if err := e.stop(); err != nil {
				t.Fatal(err)
			}
			pub, _ := receipts.ReadPublicKey(log.Dir())
			tl, _ := attest.OpenTrustLog(filepath.Join(filepath.Dir(log.Dir()), statedir.TrustLogFile))
			trust, _ := tl.Entries()
			rep, err := receipts.VerifyDir(log.Dir(), receipts.VerifyOptions{PublicKey: pub, Trust: trust})
			if err != nil || !rep.OK() || rep.Receipts != uint64(answered) || rep.Unsigned != 0 {
				t.Fatalf("after the disk had room: %+v %v", rep, err)
			}
		})
	}
}

// TestReceiptClientGone closes the client's socket in the middle of a slow
// stream and checks that the stream leaves exactly one receipt, with the
// outcome client gone, and that the log verifies.
func TestReceiptClientGone(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{TokensPerSecond: 20})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitLimit))
	body := chatBody("client gone mid-stream", true, 400) // 20 s at 20 tokens/s
	if _, err := fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	// Read until the first event has arrived: the stream is under way.
	br := bufio.NewReader(conn)
	var got []byte
	for !bytes.Contains(got, []byte("data:")) {
		line, err := br.ReadBytes('\n')
		got = append(got, line...)
		if err != nil {
			t.Fatalf("no first event (%v): %s", err, got)
		}
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
		t.Fatalf("stream: %s", got)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	log := e.app.Receipts()
	e.waitFor("the stream's receipt", func() bool { return log.Stats().Written >= 1 })
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	recent := log.Recent()
	if len(recent) != 1 {
		t.Fatalf("%d receipts, want 1: %+v", len(recent), recent)
	}
	if r := recent[0]; r.Route != "chat" || r.Outcome != receipts.OutcomeClientGone || r.Status != 200 || r.RequestSHA256 == "" {
		t.Fatalf("receipt: %+v", r)
	}
	pub, err := receipts.ReadPublicKey(log.Dir())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := receipts.VerifyDir(log.Dir(), receipts.VerifyOptions{PublicKey: pub})
	if err != nil || !rep.OK() || rep.Receipts != 1 || rep.Outcomes[receipts.OutcomeClientGone] != 1 {
		t.Fatalf("report: %+v %v", rep, err)
	}
}
