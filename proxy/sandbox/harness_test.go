package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/verifiertest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
)

var testNow = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// salt is a valid cache_salt for test requests.
const salt = "sandbox-test-cache-salt-0123456789abcdef"

// harness is a sandbox on a loopback port and a minimal client for it.
type harness struct {
	t    testing.TB
	s    *Server
	url  string
	hc   *http.Client
	clk  *testutil.Clock
	logs *testutil.LogBuffer
}

func start(t testing.TB, o Options) *harness {
	t.Helper()
	clk := testutil.NewClock(testNow)
	if o.Now == nil {
		o.Now = clk.Now
	}
	logs := &testutil.LogBuffer{}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	addr := testutil.ServeLoopback(t, s.Serve, s.Shutdown)
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &harness{t: t, s: s, url: "http://" + addr, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second}, clk: clk, logs: logs}
}

// verifier checks the sandbox's evidence against its test roots and
// collateral, pinned to its manifest.
func (h *harness) verifier() *attest.Verifier {
	h.t.Helper()
	return verifiertest.New(h.t, h.s.Backend(), h.s.Manifest(), testNow)
}

func (h *harness) client() *secret.Client {
	h.t.Helper()
	c, err := secret.NewClient(h.url, "test-api-key", "v1.40.0", h.hc)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// attest fetches and verifies fresh evidence and returns the mesh CA.
func (h *harness) attest() (*attest.Result, *attest.Doc, error) {
	h.t.Helper()
	n := make([]byte, attest.NonceSize)
	_, _ = rand.Read(n)
	raw, err := h.client().Attest(context.Background(), n)
	if err != nil {
		h.t.Fatal(err)
	}
	doc, err := attest.ParseDoc(raw)
	if err != nil {
		h.t.Fatal(err)
	}
	res, err := h.verifier().VerifyDoc(context.Background(), doc, n)
	return res, doc, err
}

// exchange attests the sandbox and performs a secret exchange, as the proxy
// does.
func (h *harness) exchange() envelope.Secret {
	h.t.Helper()
	_, doc, err := h.attest()
	if err != nil {
		h.t.Fatalf("attestation rejected: %v", err)
	}
	meshCA, err := attest.ParseCACert(doc.MeshCA)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := secret.Exchange(context.Background(), h.client(), meshCA, testNow)
	if err != nil {
		h.t.Fatalf("exchange: %v", err)
	}
	return envelope.Secret{ID: s.ID, Key: s.Key}
}

// reply is one response, decrypted.
type response struct {
	status int
	header http.Header
	raw    []byte // the body as received
	body   []byte // unary: decrypted body
	events []event
	done   bool  // stream ended with [DONE]
	err    error // stream read error
}

type event struct {
	name string
	data []byte // decrypted
}

// do sends body (encrypted under sec unless sec is nil) to path and
// decrypts the answer with the same session.
func (h *harness) do(path string, sec *envelope.Secret, body string, hdr ...string) *response {
	h.t.Helper()
	rt := routes[path]
	wire := []byte(body)
	var sess *envelope.Session
	if sec != nil {
		var err error
		if sess, err = envelope.NewSession(*sec); err != nil {
			h.t.Fatal(err)
		}
		if wire, err = sess.EncryptJSON(wire, rt.reqPlain); err != nil {
			h.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(wire))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer test-api-key")
	if sec != nil {
		req.Header.Set(headerSecretID, sec.ID)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return h.send(req, sess, rt)
}

func (h *harness) send(req *http.Request, sess *envelope.Session, rt *route) *response {
	h.t.Helper()
	resp, err := h.hc.Do(req)
	if err != nil {
		return &response{err: err}
	}
	defer resp.Body.Close()
	r := &response{status: resp.StatusCode, header: resp.Header}
	decrypt := sess != nil && resp.Header.Get(headerEncrypted) != "false"
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		r.raw, r.err = io.ReadAll(resp.Body)
		r.body = r.raw
		if decrypt && r.err == nil {
			if r.body, err = sess.DecryptJSON(r.raw, rt.respPlain); err != nil {
				h.t.Fatalf("decrypt response: %v\n%s", err, r.raw)
			}
		}
		return r
	}
	br := bufio.NewReader(resp.Body)
	name := ""
	for {
		line, err := br.ReadBytes('\n')
		r.raw = append(r.raw, line...)
		if err != nil {
			if err != io.EOF {
				r.err = err
			}
			return r
		}
		line = bytes.TrimRight(line, "\n")
		switch {
		case len(line) == 0:
		case bytes.HasPrefix(line, []byte("event: ")):
			name = string(line[len("event: "):])
		case string(line) == "data: [DONE]":
			r.done = true
		case bytes.HasPrefix(line, []byte("data: ")):
			data := line[len("data: "):]
			if decrypt {
				if data, err = sess.DecryptJSON(data, rt.respPlain); err != nil {
					h.t.Fatalf("decrypt chunk %d: %v", len(r.events), err)
				}
			}
			r.events = append(r.events, event{name: name, data: bytes.Clone(data)})
			name = ""
		default:
			h.t.Fatalf("unexpected SSE line %q", line)
		}
	}
}

// decode unmarshals JSON or fails the test.
func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// chatChunk is the part of a chat chunk the tests read.
type chatChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Role      string `json:"role"`
			Content   string `json:"content"`
			ToolCalls []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}
