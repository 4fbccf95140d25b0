package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// TestJSONShapeLimits: a body of many tiny members or deep nesting is
// refused before decoding, in GitLab's shape, and reaches no model.
func TestJSONShapeLimits(t *testing.T) {
	h := newHarness(t, harnessOptions{options: func(o *Options) { o.MaxRequestBody = 32 << 20 }})
	var many strings.Builder
	many.WriteString(`{"current_file":{"file_name":"a.go","content_above_cursor":"x"}`)
	for i := range 300_000 {
		fmt.Fprintf(&many, `,"k%d":0`, i)
	}
	many.WriteString("}")
	deep := `{"current_file":{"file_name":"a.go","content_above_cursor":"x"},"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "}"
	hdr := h.headers(gitlabtest.TokenOptions{})
	hdr.Set("Content-Type", "application/json")
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"many members", many.String(), 413, "object members"},
		{"deep nesting", deep, 422, "nesting depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", "/v2/code/completions", tc.body, hdr)
			if r.status != tc.status || !strings.Contains(string(r.body), `"detail":"Validation error: the JSON body exceeds`) || !strings.Contains(string(r.body), tc.msg) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	if n := h.model.calls(); n != 0 {
		t.Fatalf("%d model calls", n)
	}
}

// TestReadyNamesWhatIsMissingOnly: /monitoring/ready is unauthenticated:
// it names what is missing, not the upstream answer or IDs behind it.
func TestReadyNamesWhatIsMissingOnly(t *testing.T) {
	h := newHarness(t, harnessOptions{options: func(o *Options) {
		o.Ready = func() (bool, string) {
			return false, `confidential backend not ready: inference secret not ready: secret exchange failed: HTTP 500: {"error":"no secret for ID \"c2VjcmV0LWlk\""}`
		}
	}})
	r := h.do("GET", "/monitoring/ready", "", nil)
	if r.status != 503 || !strings.Contains(string(r.body), "secret exchange failed") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "c2VjcmV0LWlk") || strings.Contains(string(r.body), "HTTP 500") {
		t.Fatalf("/monitoring/ready carries upstream details: %s", r.body)
	}
}

// TestReadyWarningKeepsReady: a warning (GitLab drift) is shown on
// /monitoring/ready without making the gateway unready.
func TestReadyWarningKeepsReady(t *testing.T) {
	warning := "GitLab drift: 1 problem(s) in GitLab's Duo configuration"
	h := newHarness(t, harnessOptions{options: func(o *Options) {
		o.Ready = func() (bool, string) { return true, "" }
		o.Warning = func() string { return warning }
	}})
	r := h.do("GET", "/monitoring/ready", "", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"ready":true`) || !strings.Contains(string(r.body), `"warning":"GitLab drift: 1 problem(s)`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	warning = ""
	if r := h.do("GET", "/monitoring/ready", "", nil); r.status != 200 || strings.Contains(string(r.body), "warning") {
		t.Fatalf("without a warning: %d %s", r.status, r.body)
	}
}
