package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
)

const testGitLabToken = "glpat-ui-test-secret-token"

func TestGitLabConnectForm(t *testing.T) {
	var (
		mu  sync.Mutex
		got []ConnectRequest
	)
	calls := func() []ConnectRequest { mu.Lock(); defer mu.Unlock(); return append([]ConnectRequest(nil), got...) }
	answer := func(ctx context.Context, req ConnectRequest) (string, bool, error) {
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		if req.Token == "glpat-read-only" {
			return "", false, &gitlabconnect.GateError{Gate: "token", Problem: "the token has the scopes [read_api]", Fix: "create a token with the api scope"}
		}
		return "Plan: 1 settings to set", true, nil
	}
	drift := &gitlabconnect.Report{Checked: t0.Add(-time.Minute), Counts: map[string]int{"vendored": 1, "self_hosted": 15},
		Problems: []gitlabconnect.Problem{{Feature: "DUO_CHAT", What: "General Chat (DUO_CHAT) is on a GitLab-managed model", Fix: "run gitlab connect --apply", Repairable: true}}}
	f := newFixture(t, fixtureOptions{sources: func(s *Sources) {
		s.GitLabConnect = answer
		s.GitLabWatch = true
		s.GitLabDrift = func() *gitlabconnect.Report { return drift }
	}})
	c := f.login(testPassword)
	page := f.do(c, http.MethodGet, "/admin/gitlab", nil)
	for _, want := range []string{`class="callout bad drift"`, "<strong>DUO_CHAT</strong>", "General Chat (DUO_CHAT) is on a GitLab-managed model", `action="/admin/gitlab/connect"`, `type="password" id="gitlab-token"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("GitLab page lacks %q", want)
		}
	}
	tok := csrf(t, page.body)

	if r := f.do(c, http.MethodPost, "/admin/gitlab/connect", url.Values{"token": {testGitLabToken}, "action": {"apply"}}); r.status != http.StatusForbidden {
		t.Errorf("connect without CSRF: %d", r.status)
	}
	if r := f.do(f.client(), http.MethodPost, "/admin/gitlab/connect", url.Values{"csrf": {tok}, "token": {testGitLabToken}}); r.status != http.StatusForbidden {
		t.Errorf("connect without a session: %d", r.status)
	}
	if len(calls()) != 0 {
		t.Fatalf("a refused form ran connect: %+v", calls())
	}

	r := f.do(c, http.MethodPost, "/admin/gitlab/connect", url.Values{"csrf": {tok}, "token": {testGitLabToken}, "action": {"apply"}, "keep": {"on"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Applied and verified.") || !strings.Contains(r.body, "Plan: 1 settings to set") {
		t.Errorf("apply: %d\n%s", r.status, r.body)
	}
	if strings.Contains(r.body, testGitLabToken) {
		t.Error("the page echoes the token")
	}
	if got := calls(); len(got) != 1 || !got[0].Apply || !got[0].KeepToken || got[0].Token != testGitLabToken {
		t.Errorf("requests %+v", got)
	}

	r = f.do(c, http.MethodPost, "/admin/gitlab/connect", url.Values{"csrf": {tok}, "token": {"glpat-read-only"}, "action": {"plan"}})
	if !strings.Contains(r.body, `id="connect-error"`) || !strings.Contains(r.body, "the token has the scopes [read_api]") || !strings.Contains(r.body, "create a token with the api scope") {
		t.Errorf("gate: %s", r.body)
	}
	r = f.do(c, http.MethodPost, "/admin/gitlab/connect", url.Values{"csrf": {tok}, "action": {"plan"}})
	if !strings.Contains(r.body, "enter a GitLab personal access token") || len(calls()) != 2 {
		t.Errorf("no token: %d calls\n%s", len(calls()), r.body)
	}

	st := f.do(c, http.MethodGet, "/api/status", nil)
	// Drift is a warning: the appliance stays ready.
	for _, want := range []string{`"ready": true`, `"gitlab": {`, `"watching": true`, `"vendored": 1`, `"feature": "DUO_CHAT"`, `"name": "gitlab"`} {
		if !strings.Contains(st.body, want) {
			t.Errorf("/api/status lacks %s", want)
		}
	}
	m := f.do(c, http.MethodGet, "/metrics", nil)
	for _, want := range []string{`duo_gitlab_features{state="vendored"} 1`, `duo_gitlab_features{state="self_hosted"} 15`, "duo_gitlab_drift_problems 1", "duo_gitlab_watch_ok 0"} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
