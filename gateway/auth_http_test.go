package gateway

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// TestAuthOverHTTP checks that each authentication rule reaches GitLab in
// GitLab's shape: the status, the exact body, and nothing sent to the model.
func TestAuthOverHTTP(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	good := func() http.Header { return h.headers(gitlabtest.TokenOptions{}) }
	with := func(o gitlabtest.TokenOptions) func() http.Header {
		return func() http.Header { return h.headers(o) }
	}
	set := func(name, value string) func() http.Header {
		return func() http.Header {
			hd := good()
			if value == "" {
				hd.Del(name)
			} else {
				hd.Set(name, value)
			}
			return hd
		}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	now := time.Now().Unix()
	tests := []struct {
		name   string
		hdr    func() http.Header
		status int
		body   string
	}{
		{"no Authorization", set("Authorization", ""), 401, `{"error":"No authorization header presented"}`},
		{"Basic scheme", set("Authorization", "Basic dXNlcjpwYXNz"), 401, `{"error":"Invalid authorization header"}`},
		{"empty bearer (feature not set to self-hosted)", set("Authorization", "Bearer "), 401, `{"error":"Forbidden by auth provider"}`},
		{"no X-Gitlab-Authentication-Type", set(auth.HeaderAuthenticationType, ""), 401, `{"error":"Invalid authentication token type - only OIDC is supported"}`},
		{"alg none", set("Authorization", "Bearer "+b64([]byte(`{"alg":"none"}`))+"."+b64([]byte(`{"iss":"x"}`))+"."), 401, `{"error":"Forbidden by auth provider"}`},
		{"oversized token", set("Authorization", "Bearer "+strings.Repeat("a", 9000)+".b.c"), 401, `{"error":"Forbidden by auth provider"}`},
		{"expired", with(gitlabtest.TokenOptions{ExtraClaims: map[string]any{"iat": now - 7200, "nbf": now - 7205, "exp": now - 3600}}), 401, `{"error":"Forbidden by auth provider"}`},
		{"not yet valid", with(gitlabtest.TokenOptions{ExtraClaims: map[string]any{"nbf": now + 3600}}), 401, `{"error":"Forbidden by auth provider"}`},
		{"wrong audience", with(gitlabtest.TokenOptions{Audiences: []string{"gitlab-duo-workflow-service"}}), 401, `{"error":"Forbidden by auth provider"}`},
		{"realm header mismatch", set(auth.HeaderRealm, "saas"), 401, `{"error":"Header mismatch 'X-Gitlab-Realm'"}`},
		{"instance header mismatch", set(auth.HeaderInstanceID, "00000000-0000-4000-8000-000000000000"), 401, `{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}`},
		{"valid token", good, 200, ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.model.calls()
			r := h.do(http.MethodPost, "/v1/search/gitlab-docs", `{"type":"search-docs","payload":{"query":"runners"}}`, tc.hdr())
			if r.status != tc.status || (tc.body != "" && string(r.body) != tc.body) {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tc.status, tc.body)
			}
			if h.model.calls() != before {
				t.Error("the model was called")
			}
		})
	}
}

// TestGitLabKeyRotation: a token signed with GitLab's new key (unknown kid)
// is accepted after one refetch, without a restart.
func TestGitLabKeyRotation(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if err := h.gitlab.Rotate(); err != nil {
		t.Fatal(err)
	}
	r := h.post("/v1/search/gitlab-docs", `{"type":"search-docs","payload":{"query":"runners"}}`)
	if r.status != 200 {
		t.Fatalf("token with the rotated key: %d %s", r.status, r.body)
	}
	if st := h.jwks.Status(); st.Fetches < 2 || st.KeyCount < 2 {
		t.Errorf("no refetch after the unknown kid: %+v", st)
	}
}
