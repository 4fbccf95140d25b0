package gitlabtest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

type gqlResult struct {
	Data   map[string]any `json:"data"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
	status int
}

func (r gqlResult) errs() []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, e.Message)
	}
	return out
}

// at walks r.Data along a path of keys.
func (r gqlResult) at(path ...string) any {
	var v any = r.Data
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

type standIn struct {
	gl  *gitlabtest.Admin
	url string
}

func newStandIn(t *testing.T, o gitlabtest.AdminOptions) *standIn {
	t.Helper()
	gl, err := gitlabtest.NewAdmin(o)
	if err != nil {
		t.Fatal(err)
	}
	gl.AddToken("admin", "root", true, "api")
	gl.AddToken("reader", "root", true, "read_api")
	gl.AddToken("dev", "dev", false, "api")
	srv := httptest.NewServer(gl.Handler())
	t.Cleanup(srv.Close)
	return &standIn{gl: gl, url: srv.URL}
}

func (s *standIn) do(t *testing.T, token, query string, vars map[string]any) gqlResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.url+gitlabtest.AdminPath, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r gqlResult
	r.status = resp.StatusCode
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r
}

const setURL = `mutation($u: String, $d: String, $t: Int) { duoSettingsUpdate(input: {aiGatewayUrl: $u, duoAgentPlatformServiceUrl: $d, aiGatewayTimeoutSeconds: $t}) { duoSettings { aiGatewayUrl } errors } }`

func TestAdminSettingsRules(t *testing.T) {
	cases := []struct {
		name    string
		o       gitlabtest.AdminOptions
		vars    map[string]any
		wantErr string
		wantURL string
	}{
		{"https, trailing slash stripped", gitlabtest.AdminOptions{}, map[string]any{"u": "https://duo.example.com:5052/"}, "", "https://duo.example.com:5052"},
		{"localhost refused", gitlabtest.AdminOptions{}, map[string]any{"u": "https://localhost:5052"}, "Ai gateway url is blocked: Requests to localhost are not allowed", ""},
		{"loopback refused", gitlabtest.AdminOptions{}, map[string]any{"u": "http://127.0.0.1:5052"}, "Ai gateway url is blocked: Requests to localhost are not allowed", ""},
		{"loopback in development mode", gitlabtest.AdminOptions{AllowLocalhost: true}, map[string]any{"u": "http://127.0.0.1:5052"}, "", "http://127.0.0.1:5052"},
		{"private address refused", gitlabtest.AdminOptions{}, map[string]any{"u": "https://10.1.2.3:5052"}, "Ai gateway url is blocked: Requests to the local network are not allowed", ""},
		{"private address allowlisted", gitlabtest.AdminOptions{Allowlist: []string{"10.1.2.3"}}, map[string]any{"u": "https://10.1.2.3:5052"}, "", "https://10.1.2.3:5052"},
		{"scheme", gitlabtest.AdminOptions{}, map[string]any{"u": "ftp://duo.example.com"}, "Ai gateway url is blocked: Only allowed schemes are http, https", ""},
		{"too long", gitlabtest.AdminOptions{}, map[string]any{"u": "https://duo.example.com/" + strings.Repeat("a", 2048)}, "Ai gateway url is too long (maximum is 2048 characters)", ""},
		{"timeout below 60", gitlabtest.AdminOptions{}, map[string]any{"t": 30}, "Ai gateway timeout seconds must be between 60 and 600 seconds", ""},
		// GitLab documents host:port but only checks the length.
		{"agent platform URL with scheme accepted", gitlabtest.AdminOptions{}, map[string]any{"d": "https://duo.example.com:50052"}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStandIn(t, tc.o)
			r := s.do(t, "admin", setURL, tc.vars)
			if len(r.Errors) > 0 {
				t.Fatalf("top-level errors %v", r.errs())
			}
			errs, _ := r.at("duoSettingsUpdate", "errors").([]any)
			got := ""
			if len(errs) > 0 {
				got = errs[0].(string)
			}
			if got != tc.wantErr {
				t.Errorf("errors %v, want %q", errs, tc.wantErr)
			}
			if gw, _, _ := s.gl.Settings(); gw != tc.wantURL {
				t.Errorf("aiGatewayUrl %q, want %q", gw, tc.wantURL)
			}
		})
	}
}

func TestAdminAgentPlatformURLWithSchemeFailsTheProbe(t *testing.T) {
	s := newStandIn(t, gitlabtest.AdminOptions{})
	s.do(t, "admin", setURL, map[string]any{"u": "https://duo.example.com", "d": "https://duo.example.com:50052"})
	r := s.do(t, "admin", `{ cloudConnectorStatus { success probeResults { name success } } }`, nil)
	if r.at("cloudConnectorStatus", "success") != false {
		t.Errorf("status %v", r.Data)
	}
}

func TestAdminPermissions(t *testing.T) {
	s := newStandIn(t, gitlabtest.AdminOptions{})
	r := s.do(t, "dev", `{ aiSelfHostedModels { nodes { id } } }`, nil)
	if !slices.Contains(r.errs(), gitlabtest.PermissionError) {
		t.Errorf("non-admin: %v", r.errs())
	}
	r = s.do(t, "dev", setURL, map[string]any{"u": "https://duo.example.com"})
	if !slices.Contains(r.errs(), "You don't have permission to update the setting ai_gateway_url.") {
		t.Errorf("non-admin settings: %v", r.errs())
	}
	r = s.do(t, "reader", setURL, map[string]any{"u": "https://duo.example.com"})
	if !slices.Contains(r.errs(), gitlabtest.PermissionError) || s.gl.Models() != nil {
		t.Errorf("read_api mutation: %v", r.errs())
	}
	if gw, _, _ := s.gl.Settings(); gw != "" {
		t.Errorf("a refused mutation changed the URL to %q", gw)
	}
	r = s.do(t, "nobody", `{ currentUser { username } }`, nil)
	if r.status != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", r.status)
	}
	s.gl.SetLicence(gitlabtest.Licence{})
	r = s.do(t, "admin", `{ duoSettings { aiGatewayUrl } aiFeatureSettings { nodes { feature } } }`, nil)
	if !slices.Contains(r.errs(), gitlabtest.PermissionError) || r.at("duoSettings", "aiGatewayUrl") != nil {
		t.Errorf("unlicensed: %v %v", r.errs(), r.Data)
	}
}

const createModel = `mutation($n: String!, $f: AiAcceptedSelfHostedModels!) { aiSelfHostedModelCreate(input: {name: $n, model: $f, endpoint: "https://duo.example.com/v1", identifier: "custom_openai/x"}) { selfHostedModel { id } errors } }`

func TestAdminModelsAndFeatures(t *testing.T) {
	s := newStandIn(t, gitlabtest.AdminOptions{})
	r := s.do(t, "admin", createModel, map[string]any{"n": "general-one", "f": "GENERAL"})
	id, _ := r.at("aiSelfHostedModelCreate", "selfHostedModel", "id").(string)
	if id != "gid://gitlab/Ai::SelfHostedModel/1" {
		t.Fatalf("create: %v %v", r.Data, r.errs())
	}
	r = s.do(t, "admin", createModel, map[string]any{"n": "general-one", "f": "GPT"})
	if errs, _ := r.at("aiSelfHostedModelCreate", "errors").([]any); len(errs) != 1 || errs[0] != "Name has already been taken" {
		t.Errorf("duplicate name: %v", r.Data)
	}
	s.do(t, "admin", createModel, map[string]any{"n": "codestral-one", "f": "CODESTRAL"})
	list := func(q string) int {
		nodes, _ := s.do(t, "admin", q, nil).at("aiSelfHostedModels", "nodes").([]any)
		return len(nodes)
	}
	if n := list(`{ aiSelfHostedModels { nodes { id } } }`); n != 1 {
		t.Errorf("id-less list before beta terms: %d models, want only the GA one", n)
	}
	if n := list(`{ aiSelfHostedModels(id: "gid://gitlab/Ai::SelfHostedModel/1") { nodes { id } } }`); n != 1 {
		t.Errorf("by id: %d", n)
	}
	s.gl.AcceptBetaTerms(true)
	if n := list(`{ aiSelfHostedModels { nodes { id } } }`); n != 2 {
		t.Errorf("after beta terms: %d", n)
	}

	assign := `mutation($f: [AiFeatures!]!, $m: AiSelfHostedModelID) { aiFeatureSettingUpdate(input: {features: $f, provider: SELF_HOSTED, aiSelfHostedModelId: $m}) { aiFeatureSettings { feature } errors } }`
	r = s.do(t, "admin", assign, map[string]any{"f": []string{"CODE_COMPLETIONS", "REVIEW_MERGE_REQUEST", "DUO_AGENT_PLATFORM"}, "m": "gid://gitlab/Ai::SelfHostedModel/2"})
	errs, _ := r.at("aiFeatureSettingUpdate", "errors").([]any)
	if len(errs) != 2 || errs[0] != "Codestral is incompatible with the Code Review feature" || errs[1] != "Codestral is incompatible with the All agents, except Agentic Chat feature" {
		t.Errorf("compatibility: %v %v", errs, r.errs())
	}
	if p, _ := s.gl.Feature("CODE_COMPLETIONS"); p != "self_hosted" {
		t.Errorf("the compatible feature was not saved: %s", p)
	}
	r = s.do(t, "admin", assign, map[string]any{"f": []string{}, "m": "gid://gitlab/Ai::SelfHostedModel/1"})
	if errs, _ := r.at("aiFeatureSettingUpdate", "errors").([]any); len(errs) != 1 || errs[0] != "At least one feature is required" {
		t.Errorf("empty: %v", r.Data)
	}
	r = s.do(t, "admin", assign, map[string]any{"f": []string{"DUO_CHAT"}})
	if errs, _ := r.at("aiFeatureSettingUpdate", "errors").([]any); len(errs) != 1 || errs[0] != "Self hosted model can't be blank" {
		t.Errorf("no model: %v", r.Data)
	}

	// Agent Platform features need their own ability: a mixed batch fails whole.
	s.gl.SetLicence(gitlabtest.Licence{SelfHostedModels: true})
	r = s.do(t, "admin", assign, map[string]any{"f": []string{"DUO_CHAT", "DUO_AGENT_PLATFORM_AGENTIC_CHAT"}, "m": "gid://gitlab/Ai::SelfHostedModel/1"})
	if !slices.Contains(r.errs(), "You don't have permission to update the setting ai_self_hosted_model_id.") {
		t.Errorf("mixed batch without the Agent Platform ability: %v", r.errs())
	}
	if p, _ := s.gl.Feature("DUO_CHAT"); p != "unassigned" {
		t.Errorf("a refused batch saved DUO_CHAT: %s", p)
	}
	r = s.do(t, "admin", assign, map[string]any{"f": []string{"DUO_CHAT"}, "m": "gid://gitlab/Ai::SelfHostedModel/1"})
	if p, m := s.gl.Feature("DUO_CHAT"); p != "self_hosted" || m != "general-one" {
		t.Errorf("classic alone: %s %s %v", p, m, r.errs())
	}

	// Deleting a record cascades: its features lose their rows.
	r = s.do(t, "admin", `mutation { aiSelfHostedModelDelete(input: {id: "gid://gitlab/Ai::SelfHostedModel/1"}) { errors } }`, nil)
	if p, _ := s.gl.Feature("DUO_CHAT"); p != "unassigned" || len(s.gl.Models()) != 1 {
		t.Errorf("cascade: %s %v", p, r.errs())
	}
}

func TestAdminBetaFeaturesAndUpgrade(t *testing.T) {
	s := newStandIn(t, gitlabtest.AdminOptions{})
	count := func() int {
		nodes, _ := s.do(t, "admin", `{ aiFeatureSettings { nodes { feature provider } } }`, nil).at("aiFeatureSettings", "nodes").([]any)
		return len(nodes)
	}
	if n := count(); n != 10 {
		t.Errorf("before beta terms %d features listed, want 10", n)
	}
	s.gl.AcceptBetaTerms(true)
	if n := count(); n != 18 {
		t.Errorf("after beta terms %d, want 18", n)
	}
	enum := func() []any {
		v, _ := s.do(t, "admin", `{ __type(name: "AiFeatures") { enumValues { name } } }`, nil).at("__type", "enumValues").([]any)
		return v
	}
	if len(enum()) != 18 {
		t.Errorf("enum %v", enum())
	}
	if err := s.gl.Upgrade("DUO_CHAT_EXPLAIN_PIPELINE"); err != nil {
		t.Fatal(err)
	}
	if len(enum()) != 19 || count() != 19 {
		t.Errorf("after upgrade: enum %d, listed %d", len(enum()), count())
	}
	r := s.do(t, "admin", `mutation { aiFeatureSettingUpdate(input: {features: [DUO_CHAT_EXPLAIN_PIPELINE], provider: VENDORED}) { errors } }`, nil)
	if p, _ := s.gl.Feature("DUO_CHAT_EXPLAIN_PIPELINE"); p != "vendored" {
		t.Errorf("new value not usable: %s %v", p, r.errs())
	}
}

func TestIssuerServesTheAdminAPI(t *testing.T) {
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(iss.Handler())
	defer srv.Close()
	iss.SetURL(srv.URL)
	s := &standIn{url: srv.URL}
	if r := s.do(t, "admin", `{ currentUser { username } }`, nil); r.status != http.StatusNotFound {
		t.Errorf("without SetAdmin: %d", r.status)
	}
	gl, _ := gitlabtest.NewAdmin(gitlabtest.AdminOptions{})
	gl.AddToken("admin", "root", true, "api")
	iss.SetAdmin(gl)
	if r := s.do(t, "admin", `{ currentUser { username } }`, nil); r.at("currentUser", "username") != "root" {
		t.Errorf("with SetAdmin: %d %v", r.status, r.Data)
	}
}
