package appliance

import (
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
)

// GitLab drift is a readiness warning on /monitoring/ready: it names the
// count, never the features (the endpoint is public), and nothing while
// GitLab is in order or the watch is off.
func TestGitLabWarning(t *testing.T) {
	drifted := &gitlabconnect.Report{Checked: time.Now(), Counts: map[string]int{}, Problems: []gitlabconnect.Problem{
		{Feature: "DUO_CHAT", What: "General Chat (DUO_CHAT) is on a GitLab-managed model"},
		{Feature: "CODE_COMPLETIONS", What: "Code Completion is disabled"},
	}}
	for _, tc := range []struct {
		name    string
		watch   *gitlabWatch
		want    string
		without string
	}{
		{name: "watch off"},
		{name: "not polled yet", watch: &gitlabWatch{}},
		{name: "in order", watch: watchWith(&gitlabconnect.Report{Checked: time.Now(), Counts: map[string]int{}})},
		{name: "drifted", watch: watchWith(drifted), want: "GitLab drift: 2 problem(s) in GitLab's Duo configuration; see the admin UI or `duo-confidential gitlab verify`", without: "DUO_CHAT"},
		{name: "unreadable", watch: &gitlabWatch{err: "no token"}, want: "GitLab drift watch: cannot read GitLab's Duo configuration", without: "no token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := (&Appliance{gitlab: tc.watch}).gitlabWarning()
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("warning %q, want %q", got, tc.want)
			}
			if tc.without != "" && strings.Contains(got, tc.without) {
				t.Errorf("warning %q names %q", got, tc.without)
			}
		})
	}
}

func watchWith(r *gitlabconnect.Report) *gitlabWatch {
	w := &gitlabWatch{}
	w.last.Store(r)
	return w
}
