package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// attackTarget names one of the binary's sockets and a request it answers
// 200 without side effects (to show it still serves others).
type attackTarget struct {
	name   string
	addr   string
	health string
	header http.Header
}

func (e *listenersEnv) listeners() []attackTarget {
	return []attackTarget{
		{"proxy", e.proxyAddr, "/readyz", nil},
		{"gateway", e.gwAddr, "/monitoring/healthz", nil},
		{"admin", e.admAdr, "/api/status", e.adminHeaders()},
	}
}

// TestListenerSecurity attacks each listener of the real binary (proxy,
// gateway, admin): slowloris, oversized headers and bodies. Each attack
// ends with a clear refusal or a closed connection, and the listener goes
// on serving others.
func TestListenerSecurity(t *testing.T) {
	t.Parallel()
	e := startListenersEnv(t, "", nil)

	t.Run("slowloris", func(t *testing.T) {
		// The proxy and the gateway close a connection whose request is
		// not in after proxy.read_timeout (1s here), the admin listener
		// after its fixed 30s. Three trickling connections per listener
		// run at once while each listener goes on serving.
		ls := e.listeners()
		if testing.Short() {
			ls = ls[:2] // the admin listener's 30s exceed the short budget
		}
		const n = 3
		done := make(chan string, n*len(ls))
		for _, l := range ls {
			for range n {
				go func() { done <- slowloris(e, l.addr) }()
			}
		}
		for _, l := range ls {
			e.healthy(t, l, "slowloris connections were opened")
		}
		for range n * len(ls) {
			if msg := <-done; msg != "" {
				t.Error(msg)
			}
		}
		for _, l := range ls {
			e.healthy(t, l, "the slowloris connections were closed")
		}
	})

	t.Run("oversized headers", func(t *testing.T) {
		for _, l := range e.listeners() {
			for _, size := range []int{64 << 10, 1 << 20} {
				h := l.header.Clone()
				if h == nil {
					h = http.Header{}
				}
				h.Set("X-Oversized", strings.Repeat("a", size))
				s, _, b := e.do(http.MethodGet, e.url(l.addr)+l.health, "", h)
				// 431, or the connection closed (status 0): never served,
				// never a server error.
				if s != 0 && s != http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("%s: %d KiB header: HTTP %d: %.200s", l.name, size>>10, s, b)
				}
			}
			e.healthy(t, l, "oversized headers")
		}
	})

	t.Run("body limits", func(t *testing.T) {
		// Each listener accepts a body of exactly its limit and refuses one
		// byte more with 413, from the Content-Length alone (the raw
		// request below sends the head and reads the answer before the
		// body), and a chunked body that runs past the limit.
		gh := e.gitlabHeaders()
		for _, tc := range []struct {
			name, addr, path, ctype string
			limit                   int
			body                    func(int) string
			header                  http.Header
		}{
			{"proxy", e.proxyAddr, "/v1/chat/completions", "application/json", 16384, func(n int) string { return padJSON(t, n, chatJSON) }, nil},
			{"gateway", e.gwAddr, "/v2/code/completions", "application/json", 65536, func(n int) string { return padJSON(t, n, completionJSON) }, gh},
			{"admin", e.admAdr, "/login", "application/x-www-form-urlencoded", 64 << 10, func(n int) string { return "password=" + strings.Repeat("a", n-len("password=")) }, nil},
		} {
			h := tc.header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set("Content-Type", tc.ctype)
			if s, _, b := e.do(http.MethodPost, e.url(tc.addr)+tc.path, tc.body(tc.limit), h); s == http.StatusRequestEntityTooLarge || s == 0 || s >= 500 {
				t.Errorf("%s: a body of exactly %d bytes: HTTP %d: %.300s", tc.name, tc.limit, s, b)
			}
			for _, chunked := range []bool{false, true} {
				if got := e.rawStatus(tc.addr, tc.path, h, tc.body(tc.limit+1), chunked); got != http.StatusRequestEntityTooLarge {
					t.Errorf("%s: a body of %d bytes (chunked %v): HTTP %d, want 413", tc.name, tc.limit+1, chunked, got)
				}
			}
		}
		for _, l := range e.listeners() {
			e.healthy(t, l, "oversized bodies")
		}
	})

	if code := e.signal(); code != 0 {
		t.Errorf("serve exited %d after the attacks\n%s", code, e.serve.stderr.String())
	}
}

// healthy checks that l still answers its health request.
func (e *listenersEnv) healthy(t *testing.T, l attackTarget, after string) {
	t.Helper()
	if s, _, b := e.do(http.MethodGet, e.url(l.addr)+l.health, "", l.header); s != http.StatusOK {
		t.Errorf("%s after %s: %s answered %d: %s", l.name, after, l.health, s, b)
	}
}

// rawStatus sends a POST over a raw TLS connection (the body in a
// goroutine, so a server that answers before reading it is seen) and
// returns the answer's status code, or 0 if there was none.
func (e *listenersEnv) rawStatus(addr, path string, h http.Header, body string, chunked bool) int {
	c, err := e.dialTLS(addr)
	if err != nil {
		e.t.Errorf("dial %s: %v", addr, err)
		return 0
	}
	defer c.Close()
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: localhost\r\n", path)
	_ = h.Write(&head)
	if chunked {
		head.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", len(body))
	}
	if _, err := c.Write(head.Bytes()); err != nil {
		e.t.Errorf("write the request head: %v", err)
		return 0
	}
	go func() {
		if !chunked {
			_, _ = io.WriteString(c, body)
			return
		}
		for b := body; b != ""; {
			k := min(len(b), 4096)
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", k, b[:k]); err != nil {
				return
			}
			b = b[k:]
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	}()
	_ = c.SetReadDeadline(time.Now().Add(procLimit))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// slowloris opens a connection and trickles header lines, never finishing
// the request; it returns "" when the server closed the connection without
// serving it, else what went wrong.
func slowloris(e *listenersEnv, addr string) string {
	c, err := e.dialTLS(addr)
	if err != nil {
		return fmt.Sprintf("slowloris: dial %s: %v", addr, err)
	}
	defer c.Close()
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		read <- b
	}()
	if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
		return fmt.Sprintf("slowloris: first line: %v", err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(procLimit + 15*time.Second)
	for i := 0; ; i++ {
		select {
		case b := <-read:
			if bytes.HasPrefix(b, []byte("HTTP/1.1 2")) {
				return fmt.Sprintf("slowloris on %s was served: %q", addr, b)
			}
			return ""
		case <-deadline:
			return fmt.Sprintf("slowloris on %s: the connection is still open after %d trickled header lines", addr, i)
		case <-tick.C:
			// A write error means the server closed its side; the read
			// reports it.
			_, _ = fmt.Fprintf(c, "X-Slow-%d: 1\r\n", i)
		}
	}
}

// chatJSON is a proxy chat request whose user message is pad.
func chatJSON(pad string) any {
	return map[string]any{"model": sandbox.ModelChat, "max_tokens": 4,
		"messages": []map[string]string{{"role": "user", "content": pad}}}
}

// completionJSON is a gateway code completion whose code above the cursor
// is pad.
func completionJSON(pad string) any {
	return map[string]any{"current_file": map[string]any{"file_name": "a.go", "content_above_cursor": pad}}
}

// padJSON marshals shape(pad) with pad sized so the body is exactly n bytes.
func padJSON(t *testing.T, n int, shape func(string) any) string {
	t.Helper()
	base, err := json.Marshal(shape(""))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(shape(strings.Repeat("x", n-len(base))))
	if err != nil || len(b) != n {
		t.Fatalf("padded body: %d bytes, want %d (%v)", len(b), n, err)
	}
	return string(b)
}

// signal sends SIGTERM and returns the exit status.
func (e *listenersEnv) signal() int {
	e.t.Helper()
	if err := e.serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatal(err)
	}
	return e.serve.wait(e.t)
}

// TestPlaintextCanaryBinary sends a unique marker in prompts through the
// real binary's proxy and gateway and checks that it never appears in the
// bytes the backend received (before decryption), in the debug-level
// logs, or in the admin listener's /metrics and /api/status, while the
// answers do carry it back to the client.
func TestPlaintextCanaryBinary(t *testing.T) {
	t.Parallel()
	e := startListenersEnv(t, "", nil)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	marker := "CANARY" + hex.EncodeToString(rnd[:])
	proxy, gw := e.url(e.proxyAddr), e.url(e.gwAddr)
	hdr := http.Header{"X-Canary": {marker}, "User-Agent": {"agent-" + marker}}

	for _, stream := range []bool{false, true} {
		body, _ := json.Marshal(map[string]any{"model": sandbox.ModelChat, "stream": stream, "max_tokens": 12,
			"messages": []map[string]string{{"role": "system", "content": "system " + marker}, {"role": "user", "content": marker + " says hello"}}})
		s, _, b := e.do(http.MethodPost, proxy+"/v1/chat/completions", string(body), hdr)
		if s != http.StatusOK || !bytes.Contains(b, []byte(marker)) {
			t.Errorf("proxy chat (stream %v): HTTP %d, the marker did not round-trip: %.300s", stream, s, b)
		}
	}
	gh := e.gitlabHeaders()
	gh.Set("X-Canary", marker)
	for _, tc := range []struct{ path, body string }{
		{"/v2/code/completions", fmt.Sprintf(`{"current_file":{"file_name":"%s.go","content_above_cursor":"// %s\nfunc f() {","content_below_cursor":"}"}}`, marker, marker)},
		{"/v2/chat/agent", fmt.Sprintf(`{"messages":[{"role":"user","content":"explain %s"}]}`, marker)},
	} {
		if s, _, b := e.do(http.MethodPost, gw+tc.path, tc.body, gh); s != http.StatusOK {
			t.Errorf("gateway %s: HTTP %d: %.300s", tc.path, s, b)
		}
	}

	if n := e.backend.posts(); n < 4 {
		t.Fatalf("the backend received %d inference requests, want at least 4: the check would be vacuous", n)
	}
	if wire := e.backend.Bytes(); containsFold(wire, marker) {
		i := bytes.Index(bytes.ToLower(wire), bytes.ToLower([]byte(marker)))
		t.Errorf("the marker reached the backend in plaintext: …%q…", wire[max(0, i-200):min(len(wire), i+100)])
	}
	for _, p := range []string{"/metrics", "/api/status"} {
		s, _, b := e.do(http.MethodGet, e.url(e.admAdr)+p, "", e.adminHeaders())
		if s != http.StatusOK || len(b) == 0 {
			t.Errorf("admin %s: HTTP %d: %.200s", p, s, b)
		}
		if containsFold(b, marker) {
			t.Errorf("admin %s carries the marker", p)
		}
	}
	for _, u := range []string{proxy + "/readyz", gw + "/monitoring/ready"} {
		if _, _, b := e.do(http.MethodGet, u, "", nil); containsFold(b, marker) {
			t.Errorf("%s carries the marker: %s", u, b)
		}
	}
	if code := e.signal(); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	logs := e.serve.stderr.String() + e.serve.stdout.String()
	if !strings.Contains(logs, "level=DEBUG") {
		t.Fatalf("no debug-level log lines captured:\n%s", logs)
	}
	if containsFold([]byte(logs), marker) {
		t.Errorf("the binary logged the marker:\n%s", logs)
	}
	if containsFold([]byte(logs), url.QueryEscape(marker)) || containsFold([]byte(logs), e.adminToken) {
		t.Errorf("the binary logged the admin token or an escaped marker")
	}
}

func containsFold(b []byte, s string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s)))
}
