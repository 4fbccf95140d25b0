package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

func TestDocsSearch(t *testing.T) {
	h := newFixedClockHarness(t, nil)
	// Rails' body (ee/lib/gitlab/llm/ai_gateway/docs_client.rb).
	r := h.post("/v1/search/gitlab-docs", `{"type":"search-docs","metadata":{"source":"GitLab EE","version":"18.4.1"},"payload":{"query":"How do I create a project?"}}`)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	testutil.Golden(t, "testdata/prompts/docs_search.json", r.body)
	for _, body := range []string{
		`{"payload":{"query":"q","page_size":1}}`,
		`{"payload":{"query":"q","page_size":20}}`,
		`{"payload":{"query":""}}`,
	} {
		if r := h.post("/v1/search/gitlab-docs", body); r.status != 200 || !strings.Contains(string(r.body), `"results":[]`) {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
	}
	if h.model.calls() != 0 {
		t.Error("docs search called the model")
	}
}

func TestDocsSearchValidation(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct{ name, body, detail string }{
		{"empty body", ``, "Validation error: payload.query is required"},
		{"no payload", `{"type":"search-docs"}`, "Validation error: payload.query is required"},
		{"no query", `{"payload":{"page_size":4}}`, "Validation error: payload.query is required"},
		{"null query", `{"payload":{"query":null}}`, "Validation error: payload.query is required"},
		{"page size 0", `{"payload":{"query":"q","page_size":0}}`, "Validation error: payload.page_size must be between 1 and 20"},
		{"page size 21", `{"payload":{"query":"q","page_size":21}}`, "Validation error: payload.page_size must be between 1 and 20"},
		{"page size a string", `{"payload":{"query":"q","page_size":"4"}}`, "Validation error: payload.page_size"},
		{"query a number", `{"payload":{"query":4}}`, "Validation error: payload.query"},
		{"query too long", `{"payload":{"query":"` + strings.Repeat("q", docsMaxQueryChars+1) + `"}}`, "Validation error: payload.query is longer than 400000 characters"},
		{"not JSON", `query=q`, "Validation error: the body is not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post("/v1/search/gitlab-docs", tc.body)
			var got struct{ Detail string }
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 422 || !strings.HasPrefix(got.Detail, tc.detail) {
				t.Fatalf("%d %s, want 422 %q…", r.status, r.body, tc.detail)
			}
		})
	}
}
