package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
	hdr.Set("X-Padding", strings.Repeat("p", 3*headerBufferSize))
	r := h.do(http.MethodPost, "/v1/search/gitlab-docs", "{}", hdr)
	if r.status != 431 || !strings.Contains(string(r.body), `"detail":"request headers larger than`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
