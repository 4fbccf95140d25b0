package sandbox

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

func noSecretBody(id string) string {
	return `{"error":{"message":"no secret for ID \"` + id + `\"","type":"","code":500}}`
}

func TestProtocolErrors(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	other := envelope.Secret{ID: strings.Repeat("A", 43) + "=", Key: [32]byte{1}}
	policy := "rules=allow-good,allow-revoked,allow-unknown; revocation-time-not-before=1700000000"
	tests := []struct {
		name   string
		r      func() *response
		status int
		want   string
	}{
		{"valid request", func() *response { return h.do(pathChat, &sec, chatBody("hi", "")) }, 200, ""},
		{"missing header", func() *response {
			wire, _ := mustSession(t, sec).EncryptJSON([]byte(chatBody("hi", "")), envelope.ChatRequestPlain)
			req, _ := http.NewRequest(http.MethodPost, h.url+pathChat, bytes.NewReader(wire))
			return h.send(req, nil, nil)
		}, 400, "missing Privatemode-Secret-ID"},
		{"unknown ID", func() *response { return h.do(pathChat, &other, chatBody("hi", "")) }, 500, noSecretBody(other.ID)},
		{"envelope ID differs from header", func() *response {
			return h.do(pathChat, &other, chatBody("hi", ""), headerSecretID, sec.ID)
		}, 400, "every field must use"},
		{"short cache_salt", func() *response {
			return h.do(pathChat, &sec, strings.Replace(chatBody("hi", ""), salt, "short", 1))
		}, 400, "at least 32"},
		{"missing cache_salt", func() *response {
			return h.do(pathChat, &sec, `{"model":"sandbox-chat","messages":[{"role":"user","content":"hi"}]}`)
		}, 400, "missing field 'cache_salt'"},
		{"bad OCSP MAC", func() *response {
			return h.do(pathChat, &sec, chatBody("hi", ""), headerOCSP, policy, headerOCSPMAC, envelope.OCSPMAC(other.Key, policy))
		}, 500, "MAC does not verify"},
		{"OCSP MAC without policy", func() *response {
			return h.do(pathChat, &sec, chatBody("hi", ""), headerOCSPMAC, envelope.OCSPMAC(sec.Key, policy))
		}, 500, "MAC does not verify"},
		{"good OCSP MAC", func() *response {
			return h.do(pathChat, &sec, chatBody("hi", ""), headerOCSP, policy, headerOCSPMAC, envelope.OCSPMAC(sec.Key, policy))
		}, 200, ""},
		{"plaintext body", func() *response {
			return h.do(pathChat, nil, chatBody("hi", ""), headerSecretID, sec.ID)
		}, 400, "decrypt request"},
		{"audio_url refused", func() *response {
			return h.do(pathChat, &sec, `{"model":"sandbox-chat","cache_salt":"`+salt+`","messages":[{"role":"user","content":[{"type":"audio_url","audio_url":{"url":"https://x"}}]}]}`)
		}, 400, "not allowed"},
		{"http image refused", func() *response {
			return h.do(pathChat, &sec, `{"model":"sandbox-chat","cache_salt":"`+salt+`","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`)
		}, 400, "https or data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r()
			if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("status %d body %s; want %d %q", r.status, r.body, tc.status, tc.want)
			}
			if tc.status != 200 && r.header.Get(headerEncrypted) != "false" {
				t.Errorf("protocol error without Privatemode-Encrypted: false")
			}
		})
	}
	// An unknown model is a model error: encrypted, no plaintext flag.
	r := h.do(pathChat, &sec, strings.Replace(chatBody("hi", ""), ModelChat, "gpt-4", 1))
	if r.status != 404 || r.header.Get(headerEncrypted) != "" || !strings.Contains(string(r.body), "does not exist") {
		t.Errorf("unknown model: %d %s", r.status, r.body)
	}
}

func mustSession(t *testing.T, s envelope.Secret) *envelope.Session {
	t.Helper()
	sess, err := envelope.NewSession(s)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

func TestRequestsRecordCiphertextOnly(t *testing.T) {
	h := start(t, Options{})
	sec := h.exchange()
	const canary = "CANARY-7f3a9c-plaintext-must-not-leave-the-proxy"
	h.do(pathChat, &sec, chatBody(canary, ""))
	h.do(pathMessages, &sec, `{"model":"sandbox-chat","max_tokens":4,"messages":[{"role":"user","content":"`+canary+`"}],"cache_salt":"`+salt+`","stream":true}`)
	h.do(pathEmbeddings, &sec, `{"model":"sandbox-embed","input":"`+canary+`"}`)
	rec := h.s.Requests()
	if len(rec) != 5 { // attest, secret, three inference requests
		t.Fatalf("%d recorded requests", len(rec))
	}
	for i, r := range rec {
		if i > 0 && r.Seq <= rec[i-1].Seq {
			t.Errorf("not in arrival order")
		}
		if bytes.Contains(r.Body, []byte(canary)) {
			t.Errorf("%s carried the canary in plaintext", r.Path)
		}
	}
	last := rec[len(rec)-1]
	if last.Path != pathEmbeddings || last.Header.Get(headerSecretID) != sec.ID || !bytes.Contains(last.Body, []byte(sec.ID+":")) {
		t.Errorf("last record %s %v %.80s", last.Path, last.Header, last.Body)
	}
	// The ring is bounded.
	small := start(t, Options{RecordSize: 2, Plaintext: true})
	for range 5 {
		small.do(pathEmbeddings, nil, `{"model":"sandbox-embed","input":"x"}`)
	}
	if rec := small.s.Requests(); len(rec) != 2 || rec[1].Seq != 5 {
		t.Errorf("ring: %d records", len(rec))
	}
}

func TestFaults(t *testing.T) {
	h := start(t, Options{FaultDelay: 30 * time.Millisecond})
	sec := h.exchange()
	stream := chatBody("fault test", `,"max_tokens":10,"stream":true`)
	unary := chatBody("fault test", `,"max_tokens":10`)

	t.Run("delay", func(t *testing.T) {
		h.s.SetFault(FaultDelay, 1)
		start := time.Now()
		r := h.do(pathChat, &sec, unary)
		if r.status != 200 || time.Since(start) < 30*time.Millisecond {
			t.Errorf("status %d after %v", r.status, time.Since(start))
		}
	})
	t.Run("reset-midstream", func(t *testing.T) {
		h.s.SetFault(FaultResetMidstream, 2)
		r := h.do(pathChat, &sec, stream)
		if r.status != 200 || len(r.events) != faultChunks || !errors.Is(r.err, syscall.ECONNRESET) {
			t.Errorf("status %d, %d events, err %v", r.status, len(r.events), r.err)
		}
		r = h.do(pathChat, &sec, unary)
		if r.err == nil {
			t.Errorf("unary request not reset: %d", r.status)
		}
	})
	t.Run("truncate", func(t *testing.T) {
		h.s.SetFault(FaultTruncate, 1)
		r := h.do(pathChat, &sec, stream)
		if r.status != 200 || r.err != nil || r.done || len(r.events) != faultChunks {
			t.Fatalf("status %d err %v done %v events %d", r.status, r.err, r.done, len(r.events))
		}
		for _, ev := range r.events {
			if c := decode[chatChunk](t, ev.data); c.Choices[0].FinishReason != nil {
				t.Errorf("finish_reason in a truncated stream")
			}
		}
	})
	t.Run("no-secret", func(t *testing.T) {
		h.s.SetFault(FaultNoSecret, 1)
		r := h.do(pathChat, &sec, unary)
		if r.status != 500 || string(r.body) != noSecretBody(sec.ID) || r.header.Get(headerEncrypted) != "false" {
			t.Errorf("%d %s", r.status, r.body)
		}
		if r := h.do(pathChat, &sec, unary); r.status != 200 {
			t.Errorf("secret gone after no-secret fault: %d", r.status)
		}
	})
	t.Run("plaintext-flag", func(t *testing.T) {
		h.s.SetFault(FaultPlaintextFlag, 1)
		r := h.do(pathChat, &sec, unary)
		if r.status != 200 || r.header.Get(headerEncrypted) != "false" || !bytes.Contains(r.raw, []byte(`"choices":[{`)) {
			t.Errorf("%d %s", r.status, r.raw)
		}
	})
	t.Run("bad-measurement", func(t *testing.T) {
		h.s.SetFault(FaultBadMeasurement, 1)
		if r := h.do(pathChat, &sec, unary); r.status != 200 {
			t.Errorf("inference request consumed the attest fault: %d", r.status)
		}
		if _, _, err := h.attest(); !errors.Is(err, attest.ErrMeasurement) {
			t.Errorf("bad measurement accepted: %v", err)
		}
		if _, _, err := h.attest(); err != nil {
			t.Errorf("fault did not clear: %v", err)
		}
	})
	t.Run("expired-secret", func(t *testing.T) {
		s2 := h.exchange()
		h.s.SetFault(FaultExpiredSecret, 1)
		for range 2 {
			if r := h.do(pathChat, &s2, unary); r.status != 500 || string(r.body) != noSecretBody(s2.ID) {
				t.Errorf("%d %s", r.status, r.body)
			}
		}
		if r := h.do(pathChat, &sec, unary); r.status != 200 {
			t.Errorf("other secret affected: %d", r.status)
		}
	})
	t.Run("429", func(t *testing.T) {
		h.s.SetFault(Fault429, -1)
		for range 3 {
			if r := h.do(pathChat, &sec, unary); r.status != 429 || r.header.Get("Retry-After") != "1" || r.header.Get(headerEncrypted) != "false" {
				t.Errorf("%d %v", r.status, r.header)
			}
		}
		h.s.SetFault(FaultNone, 0)
		if r := h.do(pathChat, &sec, unary); r.status != 200 {
			t.Errorf("not cleared: %d", r.status)
		}
	})
	t.Run("500", func(t *testing.T) {
		h.s.SetFault(Fault500, 1)
		r := h.do(pathChat, &sec, stream)
		if r.status != 500 || r.header.Get(headerEncrypted) != "" || !strings.Contains(string(r.body), "injected model error") {
			t.Errorf("%d %s", r.status, r.body)
		}
		if bytes.Contains(r.raw, []byte("injected")) {
			t.Errorf("model error sent in plaintext")
		}
	})
}

func TestPlaintextMode(t *testing.T) {
	h := start(t, Options{Plaintext: true})
	body := `{"model":"sandbox-chat","messages":[{"role":"user","content":"plain hello"}],"max_tokens":5}`
	r := h.do(pathChat, nil, body)
	if r.status != 200 || r.header.Get(headerEncrypted) != "false" || !bytes.Contains(r.body, []byte("Sandbox reply to: plain hello")) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = h.do(pathChat, nil, strings.Replace(body, "}]", `}],"stream":true`, 1))
	if text, _ := streamText(t, r); text != "Sandbox reply to: plain hello" {
		t.Errorf("stream %q", text)
	}
	if r := transcriptionRequest(t, h, nil, []byte("abc"), nil); r.status != 200 || !bytes.Contains(r.body, []byte(transcript([]byte("abc")))) {
		t.Errorf("transcription %d %s", r.status, r.body)
	}
}

func TestFixedSecret(t *testing.T) {
	fixed := envelope.Secret{ID: "k5u9bRVtHkXuHrdfK3cvSB3Xl5UpJ+8Q3bAhy7B/vvs=", Key: [32]byte{0x42, 0x42}}
	h := start(t, Options{FixedSecret: &fixed})
	r := h.do(pathChat, &fixed, chatBody("fixed", `,"stream":true`))
	if text, _ := streamText(t, r); !strings.HasPrefix(text, "Sandbox reply to: fixed") {
		t.Errorf("%q", text)
	}
	h.clk.Advance(24 * time.Hour) // the fixed secret never expires
	if r := h.do(pathChat, &fixed, chatBody("fixed", "")); r.status != 200 {
		t.Errorf("%d", r.status)
	}
	if h.s.Secrets() != 0 {
		t.Errorf("fixed secret stored as exchanged")
	}
}

func TestSetFaultConcurrent(t *testing.T) {
	h := start(t, Options{Plaintext: true})
	h.s.SetFault(Fault429, 50)
	done := make(chan int)
	for range 10 {
		go func() {
			n := 0
			for range 10 {
				if h.s.takeFault(false) == Fault429 {
					n++
				}
			}
			done <- n
		}()
	}
	total := 0
	for range 10 {
		total += <-done
	}
	if total != 50 || h.s.fault.Load() != nil {
		t.Errorf("fault applied %d times, want 50", total)
	}
}
