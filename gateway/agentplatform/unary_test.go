package agentplatform

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// toolFlow is a flow whose only job here is its tool list.
type toolFlow struct{ tools []map[string]any }

func (f toolFlow) Run(context.Context, flow.Session) (flow.Outcome, error) { return flow.Finished, nil }
func (f toolFlow) Tools() []map[string]any                                 { return f.tools }

func spec(name string) map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{
		"name": name, "description": "d", "parameters": map[string]any{"type": "object", "properties": map[string]any{}},
	}}
}

// TestListToolsLikeGitLabsProbe calls ListTools the way Rails' admin
// health check does and checks the answer encodes to JSON (what the probe
// requires) with each tool once.
func TestListToolsLikeGitLabsProbe(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{
		"chat": toolFlow{[]map[string]any{spec("get_issue"), spec("get_merge_request")}},
		"x":    toolFlow{[]map[string]any{spec("get_issue")}},
	}})
	r, err := h.client.ListTools(h.ctx(h.railsMD("duo_agent_platform")), &contract.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protojson.Marshal(r)
	if err != nil || !json.Valid(b) {
		t.Fatalf("not JSON-encodable: %v", err)
	}
	if len(r.Tools) != 2 || r.Tools[0].AsMap()["function"].(map[string]any)["name"] != "get_issue" {
		t.Fatalf("tools = %s", b)
	}
}

// TestAuthNegative is the negative authentication table: every refusal
// with its gRPC code and GitLab's text.
func TestAuthNegative(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": toolFlow{}}})
	good := h.railsMD("duo_agent_platform")
	other, err := gitlabtest.New(gitlabtest.Options{URL: testGitLabURL, Audience: ServiceName, InstanceID: h.iss.InstanceID()})
	if err != nil {
		t.Fatal(err)
	}
	foreignTok, _ := other.Token(gitlabtest.TokenOptions{})
	aigwTok, _ := h.iss.Token(gitlabtest.TokenOptions{Audiences: []string{"gitlab-ai-gateway"}})
	expiredTok, _ := h.iss.Token(gitlabtest.TokenOptions{ExtraClaims: map[string]any{"exp": time.Now().Add(-2 * time.Hour).Unix()}})
	with := func(k, v string) metadata.MD {
		md := good.Copy()
		if v == "" {
			md.Delete(k)
		} else {
			md.Set(k, v)
		}
		return md
	}
	cases := []struct {
		name string
		md   metadata.MD
		code codes.Code
		msg  string
	}{
		{"no authorization", with("authorization", ""), codes.Unauthenticated, auth.MsgNoAuthorization},
		{"basic scheme", with("authorization", "Basic abc"), codes.Unauthenticated, auth.MsgInvalidAuthHeader},
		{"no oidc type", with("x-gitlab-authentication-type", ""), codes.Unauthenticated, auth.MsgInvalidAuthType},
		{"garbage token", with("authorization", "Bearer a.b.c"), codes.Unauthenticated, auth.MsgForbidden},
		{"foreign key", with("authorization", "Bearer "+foreignTok), codes.Unauthenticated, auth.MsgForbidden},
		{"gateway audience", with("authorization", "Bearer "+aigwTok), codes.Unauthenticated, auth.MsgForbidden},
		{"expired", with("authorization", "Bearer "+expiredTok), codes.Unauthenticated, auth.MsgForbidden},
		{"realm mismatch", with("x-gitlab-realm", "saas"), codes.Unauthenticated, "Header mismatch 'X-Gitlab-Realm'"},
		{"instance mismatch", with("x-gitlab-instance-id", "other"), codes.Unauthenticated, "Header mismatch 'X-Gitlab-Instance-Id'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.client.ListTools(h.ctx(c.md), &contract.ListToolsRequest{})
			st := status.Convert(err)
			if st.Code() != c.code || st.Message() != c.msg {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), c.code, c.msg)
			}
		})
	}
	// GitLab's keys not fetched yet: UNAVAILABLE (Workhorse retries), never
	// a crash or UNAUTHENTICATED.
	h.gkeys.ready.Store(false)
	_, err = h.client.ListTools(h.ctx(good), &contract.ListToolsRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != auth.MsgKeysNotReady {
		t.Fatalf("keys not ready: %v", err)
	}
	h.gkeys.ready.Store(true)
	if _, err := h.client.ListTools(h.ctx(good), &contract.ListToolsRequest{}); err != nil {
		t.Fatalf("after keys arrived: %v", err)
	}
}

// TestHealthUnauthenticated: grpc.health.v1 answers for "" and
// DuoWorkflow without a token; Shutdown turns it NOT_SERVING.
func TestHealthUnauthenticated(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	hc := healthpb.NewHealthClient(h.conn)
	for _, svc := range []string{"", "DuoWorkflow"} {
		r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%q: %v %v", svc, r, err)
		}
	}
}

// TestGenerateToken mints a token for a Rails caller, uses it as an IDE
// would, and refuses the refusals.
func TestGenerateToken(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": toolFlow{}}})
	md := h.railsMD("duo_agent_platform", "duo_chat", "complete_code")
	r, err := h.client.GenerateToken(h.ctx(md), &contract.GenerateTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := newValidatorFor(t, h)
	guid := md.Get("x-gitlab-global-user-id")[0]
	c, err := v.Validate(context.Background(), auth.Request{
		Authorization: "Bearer " + r.Token, AuthenticationType: "oidc", Realm: "self-managed",
		InstanceID: h.iss.InstanceID(), GlobalUserID: guid,
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != ServiceName || c.Subject != guid || !c.SelfIssued || c.ExpiresAt.Unix() != r.ExpiresAt {
		t.Fatalf("claims %+v", c)
	}
	if c.HasScope("complete_code") || !c.HasScope("duo_agent_platform") || !c.HasScope("duo_chat") {
		t.Fatalf("scopes %v: want caller's ∩ Agent Platform primitives", c.Scopes)
	}
	if d := c.ExpiresAt.Sub(c.IssuedAt); d != time1h {
		t.Fatalf("lifetime %s", d)
	}
	// The IDE uses it directly.
	ide := md.Copy()
	ide.Set("authorization", "Bearer "+r.Token)
	if _, err := h.client.ListTools(h.ctx(ide), &contract.ListToolsRequest{}); err != nil {
		t.Fatalf("DWS token refused: %v", err)
	}
	// ...but cannot mint more.
	_, err = h.client.GenerateToken(h.ctx(ide), &contract.GenerateTokenRequest{})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "Unauthorized to generate token" {
		t.Fatalf("self-issued caller: %v", err)
	}
	// sub must match x-gitlab-global-user-id.
	ide.Set("x-gitlab-global-user-id", "someone-else")
	_, err = h.client.ListTools(h.ctx(ide), &contract.ListToolsRequest{})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "Header mismatch 'X-Gitlab-Global-User-Id'" {
		t.Fatalf("sub mismatch: %v", err)
	}
	// No Agent Platform scope.
	_, err = h.client.GenerateToken(h.ctx(h.railsMD("complete_code")), &contract.GenerateTokenRequest{})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "Unauthorized to generate token" {
		t.Fatalf("no scope: %v", err)
	}
	// Chat tokens may come from duo_chat alone.
	wd := "chat"
	if _, err := h.client.GenerateToken(h.ctx(h.railsMD("duo_chat")), &contract.GenerateTokenRequest{WorkflowDefinition: &wd}); err != nil {
		t.Fatalf("chat token: %v", err)
	}
}

// TestPrometheusMetrics: a session and a refused call show up in the
// collectors, and the active gauge returns to zero.
func TestPrometheusMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewPrometheusMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(echoHTTP)}, metrics: m})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	must(t, err)
	must(t, st.Send(start("chat")))
	a, err := st.Recv()
	must(t, err)
	must(t, st.Send(answer(a, "x")))
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
	_, _ = h.client.ListTools(h.ctx(metadata.MD{}), &contract.ListToolsRequest{})
	m.ModelCall(100, 20, false)
	m.ModelCall(0, 0, true)
	got := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			v := mm.GetCounter().GetValue() + mm.GetGauge().GetValue() + float64(mm.GetHistogram().GetSampleCount())
			name := mf.GetName()
			for _, l := range mm.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = v
		}
	}
	want := map[string]float64{
		"duo_agent_platform_sessions_active": 0, "duo_agent_platform_sessions_total/OK": 1,
		"duo_agent_platform_actions_total/runHTTPRequest": 1, "duo_agent_platform_actions_total/newCheckpoint": 1,
		"duo_agent_platform_action_round_trip_seconds/runHTTPRequest": 1, "duo_agent_platform_auth_failures_total/Unauthenticated": 1,
		"duo_agent_platform_model_calls_total/ok": 1, "duo_agent_platform_model_calls_total/error": 1,
		"duo_agent_platform_model_tokens_total/prompt": 100, "duo_agent_platform_model_tokens_total/completion": 20,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
