package gitlabconnect_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

func kinds(p *gitlabconnect.Plan) map[string]int {
	m := map[string]int{}
	for _, c := range p.Changes {
		m[c.Kind]++
	}
	return m
}

func TestFreshPlanApplyVerifyThenNoOp(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{})
	f.gl.AcceptBetaTerms(true)
	c := f.client(t, adminToken)
	tg := target()

	p, err := c.Plan(ctx(t), tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.gl.Mutations() != 0 {
		t.Fatalf("plan made %d mutations", f.gl.Mutations())
	}
	got := kinds(p)
	want := map[string]int{gitlabconnect.ChangeSetting: 3, gitlabconnect.ChangeCreateModel: 2, gitlabconnect.ChangeAssign: 16, gitlabconnect.ChangeAssignPlatform: 2}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("plan has %d %s changes, want %d:\n%v", got[k], k, n, p.Changes)
		}
	}
	if p.Instance.Version != gitlabtest.DefaultAdminVersion || p.Instance.Username != "root" {
		t.Errorf("instance %+v", p.Instance)
	}

	st := &gitlabconnect.State{}
	r := c.Apply(ctx(t), p, tg)
	if r.Failed() {
		t.Fatalf("apply failed: %v %+v", r.Err, r.Changes)
	}
	st.Record(c.GitLabURL(), p, r)
	gw, dap, timeout := f.gl.Settings()
	if gw != "https://duo.example.com:5052" || dap != "duo.example.com:50052" || timeout != 120 {
		t.Errorf("settings %q %q %d", gw, dap, timeout)
	}
	for _, m := range f.gl.Models() {
		if m.APIToken != gitlabconnect.PlaceholderAPIKey || m.Family != "general" {
			t.Errorf("model %+v: want the placeholder key and family general", m)
		}
	}
	for feature, model := range map[string]string{"CODE_COMPLETIONS": "duo-confidential-code", "DUO_CHAT": "duo-confidential-chat",
		"SUMMARIZE_REVIEW": "duo-confidential-chat", "DUO_AGENT_PLATFORM_AGENTIC_CHAT": "duo-confidential-chat"} {
		if prov, m := f.gl.Feature(feature); prov != "self_hosted" || m != model {
			t.Errorf("%s: %s %s, want self_hosted %s", feature, prov, m, model)
		}
	}

	v, err := c.Verify(ctx(t), tg, st.IDs(), st.Managed())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() {
		t.Fatalf("verify: %+v %+v", v.Checks, v.Drift.Problems)
	}
	if len(v.Checks) != 3 || !strings.Contains(v.Checks[0].Detail, gitlabtest.SuccessMessage) {
		t.Errorf("checks %+v", v.Checks)
	}

	before := f.gl.Mutations()
	p2, err := c.Plan(ctx(t), tg, st.IDs())
	if err != nil {
		t.Fatal(err)
	}
	if !p2.NoOp() {
		t.Fatalf("second plan is not a no-op: %v", p2.Changes)
	}
	if r2 := c.Apply(ctx(t), p2, tg); len(r2.Changes) != 0 || r2.Err != nil {
		t.Fatalf("second apply: %+v", r2)
	}
	// Verify's connection checks are mutations in GitLab's schema; the no-op
	// plan and apply made none.
	if f.gl.Mutations() != before {
		t.Errorf("no-op run made %d mutations", f.gl.Mutations()-before)
	}
}

func TestGatesChangeNothing(t *testing.T) {
	cases := []struct {
		name, token string
		licence     gitlabtest.Licence
		gate, text  string
	}{
		{"read_api token", readToken, gitlabtest.Licence{SelfHostedModels: true, AgentPlatform: true}, "token", "needs the api scope"},
		{"not an admin", userToken, gitlabtest.Licence{SelfHostedModels: true, AgentPlatform: true}, "admin", "dev is not an instance administrator"},
		{"no Duo Enterprise", adminToken, gitlabtest.Licence{}, "licence", "does not let root manage self-hosted models"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, gitlabtest.AdminOptions{})
			f.gl.SetLicence(tc.licence)
			_, err := f.client(t, tc.token).Plan(ctx(t), target(), nil)
			var ge *gitlabconnect.GateError
			if !errors.As(err, &ge) || ge.Gate != tc.gate || !strings.Contains(ge.Problem, tc.text) || ge.Fix == "" {
				t.Fatalf("err = %v, want gate %s mentioning %q", err, tc.gate, tc.text)
			}
			if f.gl.Mutations() != 0 || len(f.gl.Models()) != 0 {
				t.Errorf("a closed gate changed something")
			}
		})
	}
	t.Run("unknown token", func(t *testing.T) {
		f := newFixture(t, gitlabtest.AdminOptions{})
		_, err := f.client(t, unknownToken).Plan(ctx(t), target(), nil)
		if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), unknownToken) {
			t.Fatalf("err = %v, want a 401 that does not repeat the token", err)
		}
	})
}

func TestGitLabDownMidApplyThenRerunCompletes(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{})
	f.gl.AcceptBetaTerms(true)
	c := f.client(t, adminToken)
	tg := target()
	st := &gitlabconnect.State{}
	f.gl.FailAfterMutations(2) // settings and the first model, then GitLab goes away
	p, r := connect(t, c, tg, st)
	if !errors.Is(r.Err, gitlabconnect.ErrUnreachable) {
		t.Fatalf("Err = %v, want ErrUnreachable", r.Err)
	}
	if r.Count(gitlabconnect.OutcomeDone) != 4 || r.Count(gitlabconnect.OutcomeNotAttempted) != len(p.Changes)-5 || r.Count(gitlabconnect.OutcomeFailed) != 1 {
		t.Fatalf("done %d, failed %d, not attempted %d of %d", r.Count(gitlabconnect.OutcomeDone), r.Count(gitlabconnect.OutcomeFailed),
			r.Count(gitlabconnect.OutcomeNotAttempted), len(p.Changes))
	}
	f.gl.SetDown(false)
	p2, r2 := connect(t, c, tg, st)
	if r2.Failed() {
		t.Fatalf("rerun: %v %+v", r2.Err, r2.Changes)
	}
	if k := kinds(p2); k[gitlabconnect.ChangeSetting] != 0 || k[gitlabconnect.ChangeCreateModel] != 1 {
		t.Errorf("rerun redid finished work: %v", p2.Changes)
	}
	if len(f.gl.Models()) != 2 {
		t.Errorf("models %+v", f.gl.Models())
	}
	if p3, _ := connect(t, c, tg, st); !p3.NoOp() {
		t.Errorf("third run: %v", p3.Changes)
	}
}

func TestPerFeatureCompatibilityErrors(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{})
	c := f.client(t, adminToken)
	tg := target()
	tg.Models = tg.Models[:1]
	tg.Models[0].Family = "CODESTRAL"
	tg.Routes = nil
	_, r := connect(t, c, tg, &gitlabconnect.State{})
	byTarget := map[string]gitlabconnect.ChangeResult{}
	for _, ch := range r.Changes {
		byTarget[ch.Target] = ch
	}
	if ch := byTarget["CODE_COMPLETIONS"]; ch.Outcome != gitlabconnect.OutcomeDone {
		t.Errorf("CODE_COMPLETIONS: %s %q", ch.Outcome, ch.Error)
	}
	if ch := byTarget["DUO_CHAT"]; ch.Outcome != gitlabconnect.OutcomeDone {
		t.Errorf("DUO_CHAT (Codestral is a chat family): %s %s", ch.Outcome, ch.Error)
	}
	if ch := byTarget["REVIEW_MERGE_REQUEST"]; ch.Outcome != gitlabconnect.OutcomeFailed || ch.Error != "Codestral is incompatible with the Code Review feature" {
		t.Errorf("REVIEW_MERGE_REQUEST: %s %q", ch.Outcome, ch.Error)
	}
	if ch := byTarget["DUO_AGENT_PLATFORM"]; ch.Outcome != gitlabconnect.OutcomeFailed || !strings.Contains(ch.Error, "All agents, except Agentic Chat") {
		t.Errorf("DUO_AGENT_PLATFORM: %s %q", ch.Outcome, ch.Error)
	}
}

func TestAgentPlatformAbilityIsSeparate(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{})
	f.gl.SetLicence(gitlabtest.Licence{SelfHostedModels: true}) // no dap_self_hosted?
	c := f.client(t, adminToken)
	p, r := connect(t, c, target(), &gitlabconnect.State{})
	if r.Failed() {
		t.Fatalf("apply: %v %+v", r.Err, r.Changes)
	}
	if kinds(p)[gitlabconnect.ChangeAssignPlatform] != 0 {
		t.Errorf("planned Agent Platform features GitLab does not show: %v", p.Changes)
	}
	if prov, _ := f.gl.Feature("DUO_CHAT"); prov != "self_hosted" {
		t.Errorf("classic features not assigned: %s", prov)
	}
	if !slices.Contains(p.Snapshot.Hidden, "DUO_AGENT_PLATFORM") {
		t.Errorf("hidden %v", p.Snapshot.Hidden)
	}
}

func TestBetaModelHiddenFromListingIsStillFound(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{}) // beta terms not accepted
	c := f.client(t, adminToken)
	tg := target()
	st := &gitlabconnect.State{}
	p, r := connect(t, c, tg, st)
	if r.Failed() {
		t.Fatalf("apply: %v %+v", r.Err, r.Changes)
	}
	if len(p.Snapshot.Hidden) != 8 {
		t.Errorf("hidden %v, want the 8 beta features", p.Snapshot.Hidden)
	}
	var beta gitlabconnect.ManualStep
	for _, m := range p.Manual {
		if strings.Contains(m.Title, "beta terms") {
			beta = m
		}
	}
	if beta.Status != gitlabconnect.StepNeeded {
		t.Errorf("beta step %+v", beta)
	}
	// Nothing points at the code model's id but the remembered state.
	if p2, _ := connect(t, c, tg, st); !p2.NoOp() {
		t.Fatalf("second run: %v", p2.Changes)
	}
	// Without the state a GENERAL record nobody uses is invisible: create fails
	// on the unique name, and the error says why.
	for _, feature := range []string{"CODE_COMPLETIONS", "CODE_GENERATIONS"} {
		f.gl.SetFeature(feature, "unassigned", 0)
	}
	_, r3 := connect(t, c, tg, &gitlabconnect.State{})
	found := false
	for _, ch := range r3.Changes {
		if ch.Kind == gitlabconnect.ChangeCreateModel && strings.Contains(ch.Error, "Name has already been taken") && strings.Contains(ch.Error, "beta terms") {
			found = true
		}
	}
	if !found {
		t.Errorf("no explained name clash: %+v", r3.Changes)
	}
	if len(f.gl.Models()) != 2 {
		t.Errorf("models %+v", f.gl.Models())
	}
}

func TestDisabledFeatures(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{})
	c := f.client(t, adminToken)
	f.gl.SetFeature("DUO_CHAT_FIX_CODE", "disabled", 0)
	f.gl.SetFeature("DUO_AGENT_PLATFORM", "disabled", 0)
	st := &gitlabconnect.State{}
	p, r := connect(t, c, target(), st)
	if r.Failed() {
		t.Fatal(r.Err)
	}
	if len(p.Kept) != 1 || !strings.Contains(p.Kept[0], "DUO_CHAT_FIX_CODE") {
		t.Errorf("kept %v", p.Kept)
	}
	if prov, _ := f.gl.Feature("DUO_CHAT_FIX_CODE"); prov != "disabled" {
		t.Errorf("a deliberately disabled classic feature was changed: %s", prov)
	}
	// A disabled Agent Platform feature still goes to GitLab's cloud: assigned.
	if prov, _ := f.gl.Feature("DUO_AGENT_PLATFORM"); prov != "self_hosted" {
		t.Errorf("DUO_AGENT_PLATFORM: %s", prov)
	}
	v, err := c.Verify(ctx(t), target(), st.IDs(), st.Managed())
	if err != nil || !v.OK() || v.Drift.Counts[gitlabconnect.StateDisabled] != 1 {
		t.Errorf("verify with a disabled feature: %v %+v", err, v.Drift)
	}
}

func TestOldGitLabWarnsAndAdminModeHint(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{Version: "17.11.2-ee"})
	p, err := f.client(t, adminToken).Plan(ctx(t), target(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) == 0 || !strings.Contains(p.Warnings[0], "older than 18.8") {
		t.Errorf("warnings %v", p.Warnings)
	}
	f.gl.AddToken("glpat-no-admin-mode", "root", true, "api")
	f.gl.SetLicence(gitlabtest.Licence{})
	_, err = f.client(t, "glpat-no-admin-mode").Plan(ctx(t), target(), nil)
	var ge *gitlabconnect.GateError
	if !errors.As(err, &ge) || !strings.Contains(ge.Fix, "admin_mode scope") {
		t.Errorf("err = %v", err)
	}
}
