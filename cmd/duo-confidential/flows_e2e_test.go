package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// e2eInlineFlow is a custom flow as GitLab's AI Catalog sends it inline:
// a deterministic step, an agent (answered by the sandbox through the
// attested proxy) and a conditional router.
const e2eInlineFlow = `
version: v1
environment: ambient
prompts:
  - prompt_id: triage
    prompt_template:
      system: "Decide whether the merge request needs a closer look."
      user: "{{changes}}"
components:
  - name: read_changes
    type: DeterministicStepComponent
    tool_name: build_review_merge_request_context
    inputs: [{from: "context:goal", as: merge_request_iid}]
    ui_log_events: [on_tool_execution_success]
  - name: triage
    type: AgentComponent
    prompt_id: triage
    toolset: [get_merge_request]
    inputs: [{from: "context:read_changes.tool_responses", as: changes}]
    ui_log_events: [on_agent_final_answer]
  - name: read_merge_request
    type: DeterministicStepComponent
    tool_name: get_merge_request
    inputs: [{from: "context:goal", as: merge_request_iid}]
routers:
  - {from: read_changes, to: triage}
  - from: triage
    condition:
      input: "context:triage.final_answer"
      routes: {skip: end, default_route: read_merge_request}
  - {from: read_merge_request, to: end}
flow:
  entry_point: read_changes
`

// TestFlowsEndToEnd runs the real binary: an inline custom flow with a
// conditional router runs to FINISHED against the demo GitLab (its model
// call through the attested proxy); an unknown flow and an invalid inline
// config fail at once with named errors.
func TestFlowsEndToEnd(t *testing.T) {
	e := startListenersEnv(t, "", nil)
	var agentAddr string
	e.serve.waitUntil(t, "the Agent Platform's listening line", func() bool {
		_, rest, ok := strings.Cut(e.serve.stderr.String(), `msg="agent platform listening" addr=`)
		if ok {
			agentAddr, _, _ = strings.Cut(rest, " ")
		}
		return ok
	})
	conn, err := grpc.NewClient(agentAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := contract.NewDuoWorkflowClient(conn)
	api := gitlabtest.NewAPI("oauth-flows")
	opts := gitlabtest.TokenOptions{Audiences: []string{agentplatform.ServiceName}, Scopes: []string{"duo_agent_platform"}}
	tok, err := e.gitlab.Token(opts)
	if err != nil {
		t.Fatal(err)
	}
	md := metadata.MD{}
	for k, v := range e.gitlab.Headers(tok, opts) {
		md.Set(strings.ToLower(k), v...)
	}
	md.Set(agentplatform.HeaderModelMetadata, `{"provider":"openai","name":"general","api_key":"placeholder","identifier":"custom_openai/`+sandbox.ModelChat+`"}`)
	md.Set("x-gitlab-oauth-token", api.Token)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.serve.waitUntil(t, "the Agent Platform to answer ListTools", func() bool {
		_, err := agentplatform.Probe(ctx, agentAddr, &tls.Config{RootCAs: e.roots, ServerName: "localhost"}, md)
		return err == nil
	})

	var doc map[string]any
	if err := yaml.Unmarshal([]byte(e2eInlineFlow), &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := structpb.NewStruct(doc)
	if err != nil {
		t.Fatal(err)
	}
	v1 := "v1"
	res, err := workhorse.Run(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token,
		Start: &contract.StartWorkflowRequest{WorkflowID: "21", WorkflowDefinition: "ai_catalog_flow", Goal: "1", FlowConfig: cfg, FlowConfigSchemaVersion: &v1}})
	if err != nil {
		t.Fatalf("inline flow: %v", err)
	}
	if res.Last.GetStatus() != "FINISHED" || api.Workflow("21").Status != "finished" {
		t.Fatalf("inline flow ended %s / %s", res.Last.GetStatus(), api.Workflow("21").Status)
	}
	var cp struct {
		ChannelValues struct {
			Log []struct {
				Type    string `json:"message_type"`
				Content string `json:"content"`
			} `json:"ui_chat_log"`
		} `json:"channel_values"`
	}
	if err := json.Unmarshal([]byte(res.Last.GetCheckpoint()), &cp); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, l := range cp.ChannelValues.Log {
		types = append(types, l.Type)
	}
	if strings.Join(types, ",") != "tool,agent,workflow_end" || !strings.HasPrefix(cp.ChannelValues.Log[1].Content, "Sandbox") {
		t.Fatalf("ui log %+v", cp.ChannelValues.Log)
	}
	reqs := api.Requests()
	for _, want := range []string{"GET /api/v4/projects/1/merge_requests/1/diffs?per_page=20", "GET /api/v4/projects/1/merge_requests/1"} {
		if !slices.Contains(reqs, want) {
			t.Errorf("GitLab did not see %q: %v", want, reqs)
		}
	}
	if e.backend.posts() < 1 {
		t.Fatal("the agent step made no model call through the proxy")
	}

	// code_review/v1 through the binary, as the demo's command runs it: the
	// sandbox model cannot write a review (and this environment's proxy
	// takes 16 KiB requests), so the flow builds the context, then fails
	// (FAILED, reason in the UI log, INTERNAL) without posting anything.
	var flowOut strings.Builder
	st, err := runFlow(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token}, "24", "code_review/v1", "1", &flowOut)
	if status.Code(err) != codes.Internal || st != "" {
		t.Fatalf("code review: %s %v\n%s", st, err, flowOut.String())
	}
	for _, want := range []string{"[tool] build_review_merge_request_context → success", "[end] The flow stopped: component "} {
		if !strings.Contains(flowOut.String(), want) {
			t.Errorf("code review output lacks %q:\n%s", want, flowOut.String())
		}
	}
	if len(api.ReviewPosts()) != 0 || api.Workflow("24").Status != "failed" {
		t.Fatalf("posted %d reviews; workflow %s", len(api.ReviewPosts()), api.Workflow("24").Status)
	}

	// An unknown foundational flow fails at once, named.
	_, err = workhorse.Run(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token,
		Start: &contract.StartWorkflowRequest{WorkflowID: "22", WorkflowDefinition: "sast_fp_detection/v1", Goal: "x"}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `Unsupported workflow definition "sast_fp_detection/v1"`) ||
		!strings.Contains(st.Message(), "code_review/v1") {
		t.Fatalf("unknown flow: %v", err)
	}
	// An invalid inline config is refused with the key that is wrong.
	cfg.Fields["flow"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"entry_point": structpb.NewStringValue("nowhere")}})
	_, err = workhorse.Run(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token,
		Start: &contract.StartWorkflowRequest{WorkflowID: "23", WorkflowDefinition: "ai_catalog_flow", Goal: "1", FlowConfig: cfg, FlowConfigSchemaVersion: &v1}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `flow.entry_point: "nowhere" is not a component`) {
		t.Fatalf("invalid inline flow: %v", err)
	}
}
