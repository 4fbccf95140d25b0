package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// gatewayEnv is the real binary serving the gateway and the proxy in
// sandbox mode, with a demo GitLab (in this test process) whose throwaway
// certificate reaches the binary only through outbound.ca_bundle.
type gatewayEnv struct {
	t      *testing.T
	serve  *proc
	gw     string       // gateway base URL (https, the local CA's certificate)
	client *http.Client // trusts only the appliance's local CA
	gitlab *gitlabtest.Issuer
	state  string // the appliance's state directory
}

// startGitLab serves a demo GitLab issuer over TLS on loopback until the
// test ends.
func startGitLab(t *testing.T) (*gitlabtest.Issuer, *gitlabtest.Server) {
	t.Helper()
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := gitlabtest.Serve(iss, ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gl.Close() })
	return iss, gl
}

func startGatewayEnv(t *testing.T, gitlabDown bool) *gatewayEnv {
	t.Helper()
	return startGatewayEnvModels(t, gitlabDown, sandbox.ModelChat, sandbox.ModelCode)
}

// startGatewayEnvModels is startGatewayEnv with the default and
// completion models given.
func startGatewayEnvModels(t *testing.T, gitlabDown bool, defaultModel, codeModel string) *gatewayEnv {
	t.Helper()
	dir := startSandboxProc(t)
	iss, gl := startGitLab(t)
	iss.SetDown(gitlabDown)
	ca := writeTemp(t, "gitlab-ca.pem", string(gl.CertPEM))
	gwAddr := freeAddr(t)
	cfg := writeTemp(t, "config.yaml", fmt.Sprintf(`outbound:
  ca_bundle: %s
gateway:
  listen: %s
  gitlab_url: %s
  models:
    default: %s
    code_completions: %s
  completion_format: suffix
`, ca, gwAddr, gl.URL, defaultModel, codeModel))
	// The default certificate source, the local CA, serves both listeners.
	state := t.TempDir()
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}
	p := startProc(t, env, "--config", cfg, "serve", "--sandbox", dir, "--listen", freeAddr(t), "--drain", "20s")
	_, port, _ := net.SplitHostPort(gwAddr)
	e := &gatewayEnv{t: t, serve: p, gw: "https://localhost:" + port, gitlab: iss, state: state}
	p.waitUntil(t, "the gateway to listen", func() bool {
		c, err := net.DialTimeout("tcp", gwAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	e.client = localCAClient(t, state)
	return e
}

// ready returns /monitoring/ready's status and reason.
func (e *gatewayEnv) ready() (int, string) {
	resp, err := e.client.Get(e.gw + "/monitoring/ready")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var r struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Reason
}

func (e *gatewayEnv) waitReady() {
	e.t.Helper()
	e.serve.waitUntil(e.t, "the gateway to be ready", func() bool { s, _ := e.ready(); return s == http.StatusOK })
}

// post sends body to path with Rails' headers and a fresh GitLab token.
func (e *gatewayEnv) post(path, body string, extra ...string) (int, http.Header, []byte) {
	e.t.Helper()
	tok, err := e.gitlab.Token(gitlabtest.TokenOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.postWith(e.gitlab.Headers(tok, gitlabtest.TokenOptions{}), path, body, extra...)
}

func (e *gatewayEnv) postWith(h http.Header, path, body string, extra ...string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.gw+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header = h.Clone()
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("POST %s: read: %v", path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// TestGatewayEndToEnd drives GitLab's main Duo calls through the real
// binary: gateway → attesting proxy → sandbox.
func TestGatewayEndToEnd(t *testing.T) {
	t.Parallel()
	e := startGatewayEnv(t, false)
	e.waitReady()

	t.Run("GitLab's health checks", func(t *testing.T) {
		resp, err := e.client.Get(e.gw + "/monitoring/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "{}" {
			t.Errorf("healthz %d %s", resp.StatusCode, b)
		}
		req, _ := http.NewRequest(http.MethodHead, e.gw+"/", nil)
		if resp, err := e.client.Do(req); err != nil {
			t.Errorf("HEAD /: %v (GitLab's host probe needs any HTTP answer)", err)
		} else {
			resp.Body.Close()
		}
	})

	t.Run("code completion", func(t *testing.T) {
		// GitLab's own end-to-end probe body.
		status, _, b := e.post("/v2/code/completions", `{"prompt_version":1,"current_file":{"file_name":"test.rb","content_above_cursor":"def hello_world","content_below_cursor":"\nend\n"}}`)
		var r struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
			Model struct {
				Name string `json:"name"`
			} `json:"model"`
		}
		if status != 200 || json.Unmarshal(b, &r) != nil || len(r.Choices) != 1 || !strings.Contains(r.Choices[0].Text, "sandbox fill-in-the-middle") {
			t.Fatalf("%d %s", status, b)
		}
		if r.Model.Name != sandbox.ModelCode {
			t.Errorf("completion served by %q, configured %q", r.Model.Name, sandbox.ModelCode)
		}
	})

	t.Run("v4 streamed generation", func(t *testing.T) {
		status, h, b := e.post("/v4/code/suggestions",
			`{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"fib.py","content_above_cursor":"# fibonacci\n","content_below_cursor":"","language_identifier":"python","stream":true,"prompt_enhancer":{"user_instruction":"write fibonacci"}}}],"stream":true}`,
			"X-Supports-Sse-Streaming", "true")
		if status != 200 || h.Get("X-Streaming-Format") != "sse" || !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %v %s", status, h, b)
		}
		events := sseEventNames(t, string(b))
		if len(events) < 3 || events[0] != "stream_start" || events[len(events)-1] != "stream_end" || events[1] != "content_chunk" {
			t.Errorf("events %v\n%s", events, b)
		}
	})

	t.Run("two-step chat with a tool action", func(t *testing.T) {
		first := `{"messages":[{"role":"user","content":"please use issue_reader on #42"}],"unavailable_resources":["Pipelines"]}`
		status, h, b := e.post("/v2/chat/agent", first)
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/x-ndjson") {
			t.Fatalf("%d %v %s", status, h, b)
		}
		action := ndjsonEvent(t, b, "action")
		if action == nil || action["tool"] != "issue_reader" {
			t.Fatalf("no issue_reader action in\n%s", b)
		}
		// Rails ran the tool and calls again with the scratchpad.
		second, _ := json.Marshal(map[string]any{
			"messages": []any{
				map[string]any{"role": "user", "content": "please use issue_reader on #42"},
				map[string]any{"role": "assistant", "content": nil, "agent_scratchpad": []any{map[string]any{
					"action":      map[string]any{"thought": action["thought"], "tool": action["tool"], "tool_input": action["tool_input"]},
					"observation": "Issue 42 is titled Rotate the signing keys",
				}}},
			},
		})
		status, _, b = e.post("/v2/chat/agent", string(second))
		if status != 200 {
			t.Fatalf("%d %s", status, b)
		}
		answer := finalAnswer(t, b)
		if !strings.Contains(answer, "Issue 42") {
			t.Errorf("final answer %q does not use the observation\n%s", answer, b)
		}
	})

	t.Run("direct-access token", func(t *testing.T) {
		tok, _ := e.gitlab.Token(gitlabtest.TokenOptions{})
		h := e.gitlab.Headers(tok, gitlabtest.TokenOptions{})
		status, _, b := e.postWith(h, "/v1/code/user_access_token", "")
		var r struct {
			Token string `json:"token"`
		}
		if status != 200 || json.Unmarshal(b, &r) != nil || r.Token == "" {
			t.Fatalf("%d %s", status, b)
		}
		h.Set("Authorization", "Bearer "+r.Token)
		if status, _, b := e.postWith(h, "/v2/code/completions", `{"current_file":{"file_name":"a.go","content_above_cursor":"func f() {"}}`); status != 200 {
			t.Errorf("direct-access token refused on completions: %d %s", status, b)
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		other, _ := gitlabtest.New(gitlabtest.Options{URL: "https://gitlab.invalid"})
		tok, _ := other.Token(gitlabtest.TokenOptions{})
		status, _, b := e.postWith(other.Headers(tok, gitlabtest.TokenOptions{}), "/v2/code/completions", `{}`)
		if status != 401 || !strings.Contains(string(b), `"error"`) {
			t.Errorf("token of another issuer: %d %s", status, b)
		}
	})

	if err := e.serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := e.serve.wait(t); code != 0 {
		t.Errorf("serve exited %d\n%s", code, e.serve.stderr.String())
	}
	if logs := e.serve.stderr.String(); strings.Contains(logs, "issue_reader on #42") || strings.Contains(logs, "hello_world") {
		t.Errorf("a prompt reached the logs:\n%s", logs)
	}
}

// TestGatewayGitLabDownAtStart: with GitLab unreachable the binary starts,
// says why it is not ready, answers 503 (not 401) on authenticated routes,
// and becomes ready once GitLab answers, without a restart.
func TestGatewayGitLabDownAtStart(t *testing.T) {
	t.Parallel()
	e := startGatewayEnv(t, true)
	e.serve.waitUntil(t, "a readiness reason naming GitLab's keys", func() bool {
		_, reason := e.ready()
		return strings.Contains(reason, "waiting for GitLab keys")
	})
	status, h, b := e.post("/v2/code/completions", `{"current_file":{"file_name":"a.go","content_above_cursor":"x"}}`)
	if status != http.StatusServiceUnavailable || !strings.Contains(string(b), "Waiting for GitLab keys") || h.Get("Retry-After") == "" {
		t.Errorf("before GitLab's keys: %d %s (Retry-After %q)", status, b, h.Get("Retry-After"))
	}
	e.gitlab.SetDown(false)
	e.waitReady()
	if status, _, b := e.post("/v2/code/completions", `{"current_file":{"file_name":"a.go","content_above_cursor":"x"}}`); status != 200 {
		t.Errorf("after GitLab came back: %d %s", status, b)
	}
	// GitLab rotates its key: the new kid is fetched on first sight.
	if err := e.gitlab.Rotate(); err != nil {
		t.Fatal(err)
	}
	if status, _, b := e.post("/v2/code/completions", `{"current_file":{"file_name":"a.go","content_above_cursor":"x"}}`); status != 200 {
		t.Errorf("after GitLab rotated its key: %d %s", status, b)
	}
}

// sseEventNames lists the event: names of an SSE body in order.
func sseEventNames(t *testing.T, body string) []string {
	t.Helper()
	var names []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			names = append(names, n)
		}
	}
	return names
}

// ndjsonEvent returns the data of the first event of type typ.
func ndjsonEvent(t *testing.T, body []byte, typ string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var ev struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("ndjson line %q: %v", line, err)
		}
		if ev.Type == typ {
			return ev.Data
		}
	}
	return nil
}

// finalAnswer concatenates the final_answer_delta texts; an error event
// fails the test.
func finalAnswer(t *testing.T, body []byte) string {
	t.Helper()
	if ev := ndjsonEvent(t, body, "error"); ev != nil {
		t.Fatalf("error event %v", ev)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(body), "\n") {
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Text string `json:"text"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == "final_answer_delta" {
			b.WriteString(ev.Data.Text)
		}
	}
	return b.String()
}

// TestGatewayUnknownModel: a configured model the backend does not serve
// keeps the gateway not ready, with a reason that names it and what is
// served; nothing is answered with another model.
func TestGatewayUnknownModel(t *testing.T) {
	t.Parallel()
	e := startGatewayEnvModels(t, false, "no-such-model", sandbox.ModelCode)
	e.serve.waitUntil(t, "a readiness reason naming the unknown model", func() bool {
		_, reason := e.ready()
		return strings.Contains(reason, "no-such-model") && strings.Contains(reason, sandbox.ModelChat)
	})
	if s, _ := e.ready(); s != http.StatusServiceUnavailable {
		t.Errorf("ready answered %d with an unknown model", s)
	}
	if !strings.Contains(e.serve.stderr.String(), "gateway model check failed") {
		t.Errorf("the failed model check is not logged:\n%s", e.serve.stderr.String())
	}
}
