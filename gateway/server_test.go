package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

func TestHealthAndPublicRoutes(t *testing.T) {
	h := newHarness(t, harnessOptions{options: func(o *Options) {
		o.Ready = func() (bool, string) { return false, "attesting the backend" }
		o.Notice = "SANDBOX"
	}})
	tests := []struct {
		name, method, path string
		status             int
		body               string // substring
	}{
		{"healthz", http.MethodGet, "/monitoring/healthz", 200, "{}"},
		{"ready says why not", http.MethodGet, "/monitoring/ready", 503, `"reason":"attesting the backend"`},
		{"HEAD / answers (GitLab's host probe)", http.MethodHead, "/", 401, ""},
		{"GET / without a token", http.MethodGet, "/", 401, `{"error":"No authorization header presented"}`},
		{"unknown route without a token", http.MethodPost, "/v9/nothing", 401, auth.MsgNoAuthorization},
		{"local JWKS", http.MethodGet, "/.well-known/jwks.json", 200, `"kty":"RSA"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.path, "", http.Header{})
			if r.status != tc.status || !strings.Contains(string(r.body), tc.body) {
				t.Fatalf("%d %s, want %d containing %q", r.status, r.body, tc.status, tc.body)
			}
			if tc.method != http.MethodHead && r.header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
			}
		})
	}
	if r := h.do(http.MethodGet, "/monitoring/healthz", "", http.Header{}); string(r.body) != "{}" {
		t.Errorf("healthz body %q, GitLab's gateway answers {}", r.body)
	}
}

func TestAuthenticatedUnknownRouteIs404(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	r := h.post("/v9/nothing", "{}")
	if r.status != 404 || string(r.body) != `{"detail":"Not Found"}` {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = h.do(http.MethodGet, "/v2/code/completions", "", nil)
	if r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Fatalf("GET on a POST route: %d %s allow=%q", r.status, r.body, r.header.Get("Allow"))
	}
}

func TestUserAccessTokenRoundTrip(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	hdr := h.headers(gitlabtest.TokenOptions{})
	r := h.do(http.MethodPost, "/v1/code/user_access_token", "", hdr)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var got userAccessToken
	if err := json.Unmarshal(r.body, &got); err != nil || got.Token == "" || got.ExpiresAt == 0 {
		t.Fatalf("%s: %v", r.body, err)
	}
	// The direct-access token works on the completion route only with the
	// same global user id, and cannot mint another token.
	direct := hdr.Clone()
	direct.Set("Authorization", "Bearer "+got.Token)
	if r := h.do(http.MethodPost, "/v1/code/user_access_token", "", direct); r.status != 403 ||
		!strings.Contains(string(r.body), auth.MsgUserAccessTokenForbidden) {
		t.Errorf("self-issued token minted a token: %d %s", r.status, r.body)
	}
	other := direct.Clone()
	other.Set(auth.HeaderGlobalUserID, "someone-else")
	if r := h.do(http.MethodPost, "/v2/code/completions", `{}`, other); r.status != 401 ||
		!strings.Contains(string(r.body), "Header mismatch") {
		t.Errorf("direct token with another user: %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodPost, "/v2/chat/agent", `{}`, direct); r.status != 403 {
		t.Errorf("direct token on chat: %d %s", r.status, r.body)
	}
}

func TestScopes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		path   string
		scopes []string
		status int
		msg    string
	}{
		{"/v2/code/completions", []string{"duo_chat"}, 403, "Unauthorized to access code completions"},
		{"/v1/code/user_access_token", []string{"duo_chat"}, 403, auth.MsgUserAccessTokenForbidden},
		{"/v2/chat/agent", []string{"complete_code"}, 403, "Unauthorized to access duo chat"},
		{"/v1/search/gitlab-docs", []string{"duo_chat"}, 403, "Unauthorized to search documentations"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := h.do(http.MethodPost, tc.path, "{}", h.headers(gitlabtest.TokenOptions{Scopes: tc.scopes}))
			if r.status != tc.status || !strings.Contains(string(r.body), tc.msg) || !strings.HasPrefix(string(r.body), `{"detail":`) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}

func TestLastGoodKeysWhileGitLabDown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	// A token from an issuer whose keys were never fetched: build a second
	// demo GitLab that the gateway does not know, then check the message
	// for an unknown issuer is a 401, and a kid miss on a down GitLab
	// keeps the last good keys.
	h.gitlab.SetDown(true)
	if r := h.post("/v1/search/gitlab-docs", "{}"); r.status == 401 || r.status == 503 {
		t.Fatalf("last good keys not used while GitLab is down: %d %s", r.status, r.body)
	}
}

func TestValidationDetail(t *testing.T) {
	var v struct {
		Inputs map[string]any `json:"inputs"`
		Stream bool           `json:"stream"`
		N      int            `json:"n"`
	}
	tests := []struct{ body, want string }{
		{`{"inputs":"x"}`, "Validation error: inputs must be an object, not string"},
		{`{"stream":"yes"}`, "Validation error: stream must be a boolean, not string"},
		{`{"n":1.5}`, "Validation error: n must be an integer, not number"},
		{`[1]`, "Validation error: the body must be an object, not array"},
		{`{"inputs":`, "Validation error: the body is not valid JSON (offset 10)"},
		{`{x}`, "Validation error: the body is not valid JSON (offset 2)"},
	}
	for _, tc := range tests {
		err := json.Unmarshal([]byte(tc.body), &v)
		if err == nil {
			t.Fatalf("%s decoded", tc.body)
		}
		if got := validationDetail(err); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestOversizedHeadersAre431(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	hdr := h.headers(gitlabtest.TokenOptions{})
	hdr.Set("X-Padding", strings.Repeat("p", 4<<20))
	// The whole request is written before the answer is read, like most
	// clients do: the server answers early and must let the client finish
	// writing (a reset would lose the 431) — every time, not by luck.
	for range 5 {
		status, body := rawExchange(t, h.addr(), http.MethodPost, "/v1/search/gitlab-docs", hdr, "{}")
		if status != 431 || !strings.Contains(body, `"detail":"the request headers are larger than`) {
			t.Fatalf("%d %s", status, body)
		}
	}
}

// TestOversizedBodyIs413 sends a 10 MiB code completion whole before
// reading: the client reads a 413 in GitLab's shape, not a broken pipe.
func TestOversizedBodyIs413(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	hdr := h.headers(gitlabtest.TokenOptions{})
	hdr.Set("Content-Type", "application/json")
	body := `{"current_file":{"file_name":"a.go","content_above_cursor":"` + strings.Repeat("x", 10<<20) + `"}}`
	for range 3 {
		status, got := rawExchange(t, h.addr(), http.MethodPost, "/v2/code/completions", hdr, body)
		if status != 413 || !strings.Contains(got, `"detail":"the request body is larger than`) {
			t.Fatalf("%d %s", status, got)
		}
	}
}

// rawExchange writes one whole request on a fresh connection, failing the
// test if the server stops it, then reads the answer.
func rawExchange(t *testing.T, addr, method, path string, h http.Header, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", method, path, len(body))
	_ = h.Write(&req)
	req.WriteString("\r\n")
	req.WriteString(body)
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
