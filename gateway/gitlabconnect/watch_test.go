package gitlabconnect_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// connected returns a stand-in connected to target() and its state.
func connected(t *testing.T) (*fixture, *gitlabconnect.Client, *gitlabconnect.State) {
	t.Helper()
	f := newFixture(t, gitlabtest.AdminOptions{})
	f.gl.AcceptBetaTerms(true)
	c := f.client(t, adminToken)
	st := &gitlabconnect.State{}
	if _, r := connect(t, c, target(), st); r.Failed() {
		t.Fatalf("apply: %v", r.Err)
	}
	return f, c, st
}

func watcher(t *testing.T, c *gitlabconnect.Client, st *gitlabconnect.State, repair bool) (*gitlabconnect.Watcher, *[]*gitlabconnect.Report) {
	t.Helper()
	var reports []*gitlabconnect.Report
	w, err := gitlabconnect.NewWatcher(gitlabconnect.WatchOptions{Client: c, Target: target(), State: func() *gitlabconnect.State { return st }, AutoRepair: repair,
		OnReport: func(r *gitlabconnect.Report) { reports = append(reports, r) }})
	if err != nil {
		t.Fatal(err)
	}
	return w, &reports
}

func problemAbout(r *gitlabconnect.Report, feature string) *gitlabconnect.Problem {
	for i, p := range r.Problems {
		if p.Feature == feature {
			return &r.Problems[i]
		}
	}
	return nil
}

func TestDriftDetectedInOnePoll(t *testing.T) {
	cases := []struct {
		name    string
		drift   func(f *fixture)
		feature string
		state   string
		text    string
	}{
		{"switched to a GitLab-managed model", func(f *fixture) { f.gl.SetFeature("DUO_CHAT", "vendored", 0) },
			"DUO_CHAT", gitlabconnect.StateVendored, "go to GitLab's cloud"},
		{"Agent Platform feature unassigned", func(f *fixture) { f.gl.SetFeature("DUO_AGENT_PLATFORM", "unassigned", 0) },
			"DUO_AGENT_PLATFORM", gitlabconnect.StateUnassigned, "cloud Agent Platform service"},
		{"another model", func(f *fixture) {
			// An admin adds a GA record of their own and points a feature at it.
			f.gl.SetFeature("CODE_COMPLETIONS", "self_hosted", 2)
		}, "CODE_COMPLETIONS", gitlabconnect.StateOurs, ""}, // record 2 is ours (the code model): no drift
		{"model deleted (cascade)", func(f *fixture) { f.gl.DeleteModel(2) },
			"CODE_GENERATIONS", gitlabconnect.StateUnassigned, "has no model"},
		{"upgrade adds a feature", func(f *fixture) {
			if err := f.gl.Upgrade("DUO_CHAT_EXPLAIN_PIPELINE"); err != nil {
				panic(err)
			}
		}, "DUO_CHAT_EXPLAIN_PIPELINE", gitlabconnect.StateUnassigned, "GitLab added the feature DUO_CHAT_EXPLAIN_PIPELINE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, c, st := connected(t)
			w, reports := watcher(t, c, st, false)
			if r := w.Poll(ctx(t)); !r.OK() {
				t.Fatalf("drift before any change: %+v %s", r.Problems, r.Err)
			}
			tc.drift(f)
			r := w.Poll(ctx(t))
			if len(*reports) != 2 || w.Last() != r {
				t.Fatalf("reports %d", len(*reports))
			}
			var fs gitlabconnect.FeatureState
			for _, x := range r.Features {
				if x.Feature == tc.feature {
					fs = x
				}
			}
			if fs.State != tc.state {
				t.Errorf("%s is %q, want %q", tc.feature, fs.State, tc.state)
			}
			p := problemAbout(r, tc.feature)
			if tc.text == "" {
				if p != nil {
					t.Errorf("unexpected problem %v", p)
				}
				return
			}
			if p == nil || !strings.Contains(p.What, tc.text) || !strings.Contains(p.Fix, "gitlab connect --apply") || !p.Repairable {
				t.Fatalf("problem %+v, want one saying %q with the fix", p, tc.text)
			}
			if r.Counts[tc.state] < 1 {
				t.Errorf("counts %v", r.Counts)
			}
		})
	}
}

func TestDriftCloudProbesAndSettings(t *testing.T) {
	f, c, st := connected(t)
	w, _ := watcher(t, c, st, false)
	f.gl.SetFeature("CODE_COMPLETIONS", "vendored", 0)
	r := w.Poll(ctx(t))
	var cloud bool
	for _, p := range r.Problems {
		cloud = cloud || strings.Contains(p.What, "access_probe")
	}
	if !cloud {
		t.Errorf("cloud probes not reported: %+v", r.Problems)
	}
	f.gl.SetFeature("CODE_COMPLETIONS", "self_hosted", 2)
	// Someone clears the gateway URL in GitLab's admin area.
	f.gl.AddToken("glpat-other", "other-admin", true, "api")
	other := f.client(t, "glpat-other")
	tg := target()
	tg.GatewayURL = "https://elsewhere.example.com"
	p, err := other.Plan(ctx(t), tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Changes = p.Changes[:1] // only aiGatewayUrl
	if r := other.Apply(ctx(t), p, tg); r.Failed() {
		t.Fatal(r.Err)
	}
	r = w.Poll(ctx(t))
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0].What, "elsewhere.example.com") || r.Problems[0].Repairable {
		t.Errorf("problems %+v", r.Problems)
	}
}

func TestAutoRepairReassignsOnlyFeatures(t *testing.T) {
	f, c, st := connected(t)
	w, _ := watcher(t, c, st, true)
	f.gl.SetFeature("DUO_CHAT", "vendored", 0)
	f.gl.SetFeature("DUO_AGENT_PLATFORM_AGENTIC_CHAT", "unassigned", 0)
	if err := f.gl.Upgrade("DUO_CHAT_EXPLAIN_PIPELINE"); err != nil {
		t.Fatal(err)
	}
	before := f.gl.Models()
	r := w.Poll(ctx(t))
	if !r.OK() {
		t.Fatalf("after repair: %+v", r.Problems)
	}
	slices.Sort(r.Repaired)
	if want := []string{"DUO_AGENT_PLATFORM_AGENTIC_CHAT", "DUO_CHAT", "DUO_CHAT_EXPLAIN_PIPELINE"}; !slices.Equal(r.Repaired, want) {
		t.Errorf("repaired %v, want %v", r.Repaired, want)
	}
	if prov, m := f.gl.Feature("DUO_CHAT"); prov != "self_hosted" || m != "duo-confidential-chat" {
		t.Errorf("DUO_CHAT %s %s", prov, m)
	}
	if !slices.Equal(before, f.gl.Models()) {
		t.Errorf("repair touched model records")
	}
	// A deleted record is not recreated by a repair: that is connect's job.
	f.gl.DeleteModel(1)
	r = w.Poll(ctx(t))
	if len(r.Repaired) != 0 || r.OK() || len(f.gl.Models()) != 1 {
		t.Errorf("repair after delete: repaired %v, models %d", r.Repaired, len(f.gl.Models()))
	}
}

func TestWatchReportsUnreachableGitLab(t *testing.T) {
	f, c, st := connected(t)
	w, _ := watcher(t, c, st, true)
	f.gl.SetDown(true)
	r := w.Poll(ctx(t))
	if r.Err == "" || !strings.Contains(r.Err, "did not answer") || r.OK() {
		t.Errorf("report %+v", r)
	}
}

func TestSlowModelDefinitionFetchDoesNotTimeOut(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{DefinitionsDelay: 300 * time.Millisecond})
	c, err := gitlabconnect.NewClient(gitlabconnect.ClientOptions{GitLabURL: f.url, Token: adminToken,
		CallTimeout: 100 * time.Millisecond, SlowCallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, r := connect(t, c, target(), &gitlabconnect.State{}); r.Failed() {
		t.Fatalf("apply: %v %+v", r.Err, r.Changes)
	}
	// With the ordinary limit on the slow calls, the same read fails as unreachable.
	c2, _ := gitlabconnect.NewClient(gitlabconnect.ClientOptions{GitLabURL: f.url, Token: adminToken,
		CallTimeout: 100 * time.Millisecond, SlowCallTimeout: 100 * time.Millisecond})
	if _, err := c2.Plan(ctx(t), target(), nil); err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("err = %v", err)
	}
}
