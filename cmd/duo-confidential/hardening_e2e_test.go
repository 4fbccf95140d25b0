package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// TestPlaintextCanaryHardening drives the real binary (plain HTTP, debug
// logs, $TMPDIR watched) through the paths an outside review found: a
// multipart file under a plain-listed name, an upload over fasthttp's
// 16 MiB in-memory bound, malformed requests carrying a token, and a relay
// that cuts a stream short. The marker never reaches the backend in
// plaintext, a file, or the logs, and every failure is visible to the
// client.
func TestPlaintextCanaryHardening(t *testing.T) {
	t.Parallel()
	dir := startSandboxProc(t)
	relay := interpose(t, dir)
	tmp := t.TempDir()
	addr := freeAddr(t)
	cfg := writeTemp(t, "config.yaml", "log:\n  level: debug\n")
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + t.TempDir(), "DUO_CONFIDENTIAL_TLS_SOURCE=off", "TMPDIR=" + tmp}
	p := startProc(t, env, "--config", cfg, "serve", "--sandbox", dir, "--listen", addr, "--drain", "5s")
	base := "http://" + addr
	client := &http.Client{Timeout: procLimit}
	p.waitUntil(t, "serve to be ready", func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	marker := "CANARY" + hex.EncodeToString(rnd[:])

	// Watch $TMPDIR for the whole test: fasthttp's multipart pre-parsing
	// would write uploads over 16 MiB there in cleartext.
	stopWatch := make(chan struct{})
	var tmpFiles atomic.Value
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
				tmpFiles.Store(entries[0].Name())
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	form := func(build func(w *multipart.Writer)) (int, string) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		build(w)
		_ = w.Close()
		resp, err := client.Post(base+"/v1/audio/transcriptions", w.FormDataContentType(), &buf)
		if err != nil {
			t.Fatalf("transcription: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t.Run("multipart file under a plain name", func(t *testing.T) {
		for name, build := range map[string]func(*multipart.Writer){
			"file named stream": func(w *multipart.Writer) {
				_ = w.WriteField("model", sandbox.ModelWhisper)
				fw, _ := w.CreateFormFile("stream", "a.wav")
				_, _ = fw.Write([]byte(marker))
			},
			"model twice": func(w *multipart.Writer) {
				_ = w.WriteField("model", marker)
				_ = w.WriteField("model", sandbox.ModelWhisper)
				fw, _ := w.CreateFormFile("file", "a.wav")
				_, _ = fw.Write([]byte("audio"))
			},
		} {
			if s, b := form(build); s != http.StatusBadRequest || !strings.Contains(b, "form field") {
				t.Errorf("%s: HTTP %d: %.300s", name, s, b)
			}
		}
	})
	t.Run("upload over 16 MiB", func(t *testing.T) {
		s, b := form(func(w *multipart.Writer) {
			_ = w.WriteField("model", sandbox.ModelWhisper)
			fw, _ := w.CreateFormFile("file", "speech.wav")
			chunk := []byte(marker + " spoken words ")
			for n := 0; n < 17<<20; n += len(chunk) {
				_, _ = fw.Write(chunk)
			}
		})
		if s != http.StatusOK {
			t.Errorf("HTTP %d: %.300s", s, b)
		}
	})
	t.Run("malformed requests at debug level", func(t *testing.T) {
		for _, raw := range []string{
			"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + marker + "\r\nbroken " + marker + " line\r\n\r\n",
			"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + marker + "\r\n\r\n",
			"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 80\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"\r\n" + marker + "\r\n\r\nx\r\n--b--\r\n",
			marker + " /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n",
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(c, raw)
			_ = c.SetReadDeadline(time.Now().Add(procLimit))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				b, _ := io.ReadAll(resp.Body)
				if bytes.Contains(b, []byte(marker)) {
					t.Errorf("the answer quotes the request: %q", b)
				}
			}
			c.Close()
		}
	})
	t.Run("relay cuts a stream short", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"model": sandbox.ModelChat, "stream": true, "max_tokens": 200,
			"messages": []map[string]string{{"role": "user", "content": marker + " tell a long story"}}})
		relay.cut.Store(1500)
		defer relay.cut.Store(0)
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: procLimit}).Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(b, []byte("[DONE]")) {
			t.Fatalf("a cut stream looked complete:\n%s", b)
		}
		if resp.StatusCode == http.StatusOK && !bytes.Contains(b, []byte(`data: {"error":`)) {
			t.Fatalf("a cut stream ended without the error event:\n%s", b)
		}
	})

	close(stopWatch)
	<-watched
	if f := tmpFiles.Load(); f != nil {
		t.Errorf("a file appeared in $TMPDIR during the requests: %v", f)
	}
	if n := relay.posts(); n < 2 {
		t.Fatalf("the backend received %d inference requests, want at least 2: the check would be vacuous", n)
	}
	if containsFold(relay.Bytes(), marker) {
		t.Error("the marker reached the backend in plaintext")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	logs := p.stderr.String() + p.stdout.String()
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "request refused before the handler") {
		t.Fatalf("the malformed requests left no debug lines:\n%.3000s", logs)
	}
	if containsFold([]byte(logs), marker) {
		i := strings.Index(strings.ToLower(logs), strings.ToLower(marker))
		t.Errorf("the binary logged the marker: …%s…", logs[max(0, i-300):min(len(logs), i+100)])
	}
}

// TestGatewayHardeningBinary drives the real gateway: a 10 MiB code
// completion written whole before reading gets a readable 413 in GitLab's
// shape, not a broken pipe; and with the relay in front of the backend
// cutting answers short, GitLab gets its error shapes, never an answer
// that looks complete, and no prompt reaches the relay in plaintext.
func TestGatewayHardeningBinary(t *testing.T) {
	t.Parallel()
	e := startListenersEnv(t, "", nil)
	h := e.gitlabHeaders()
	h.Set("Content-Type", "application/json")

	t.Run("10 MiB body", func(t *testing.T) {
		body := padJSON(t, 10<<20, completionJSON)
		for i := range 3 {
			c, err := e.dialTLS(e.gwAddr)
			if err != nil {
				t.Fatal(err)
			}
			var head bytes.Buffer
			fmt.Fprintf(&head, "POST /v2/code/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n", len(body))
			_ = h.Write(&head)
			head.WriteString("\r\n")
			if _, err := c.Write(append(head.Bytes(), body...)); err != nil {
				t.Fatalf("attempt %d: writing the body: %v", i, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(procLimit))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("attempt %d: reading the answer: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			c.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), `"detail":"the request body is larger than`) {
				t.Fatalf("attempt %d: HTTP %d: %.300s", i, resp.StatusCode, b)
			}
		}
	})

	t.Run("relay cuts answers short", func(t *testing.T) {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		marker := "CANARY" + hex.EncodeToString(rnd[:])
		before := e.backend.posts()
		e.backend.cut.Store(400)
		defer e.backend.cut.Store(0)
		gw := e.url(e.gwAddr)
		s, _, b := e.do(http.MethodPost, gw+"/v2/chat/agent", fmt.Sprintf(`{"messages":[{"role":"user","content":"explain %s"}]}`, marker), h)
		t.Logf("chat: HTTP %d: %.300s", s, b)
		if !(s >= 500 && bytes.Contains(b, []byte(`"detail"`)) || s == http.StatusOK && bytes.Contains(b, []byte(`"type":"error"`))) {
			t.Errorf("chat with a cut answer: HTTP %d: %.500s", s, b)
		}
		s, _, b = e.do(http.MethodPost, gw+"/v2/code/completions",
			fmt.Sprintf(`{"current_file":{"file_name":"a.go","content_above_cursor":"// %s\nfunc f() {","content_below_cursor":"}"}}`, marker), h)
		t.Logf("code completion: HTTP %d: %.300s", s, b)
		if s < 500 || !bytes.Contains(b, []byte(`"detail"`)) {
			t.Errorf("code completion with a cut answer: HTTP %d: %.500s", s, b)
		}
		vh := h.Clone()
		vh.Set("X-Supports-Sse-Streaming", "true")
		s, _, b = e.do(http.MethodPost, gw+"/v4/code/suggestions",
			fmt.Sprintf(`{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"fib.py","content_above_cursor":"# %s\n","content_below_cursor":"","language_identifier":"python","stream":true,"prompt_enhancer":{"user_instruction":"write fibonacci"}}}],"stream":true}`, marker), vh)
		t.Logf("v4 streamed generation: HTTP %d: %.300s", s, b)
		if s < 500 || !bytes.Contains(b, []byte(`"detail"`)) {
			t.Errorf("v4 streamed generation with a cut answer: HTTP %d: %.500s", s, b)
		}
		if e.backend.posts() < before+3 {
			t.Fatalf("the relay saw %d new inference requests, want 3: the check would be vacuous", e.backend.posts()-before)
		}
		if containsFold(e.backend.Bytes(), marker) {
			t.Error("the marker reached the relay in plaintext")
		}
	})

	e.backend.cut.Store(0)
	for _, l := range e.listeners() {
		e.healthy(t, l, "the hardening requests")
	}
	if code := e.signal(); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}
