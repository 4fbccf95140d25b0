package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/codereview"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
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
// call through the attested proxy); code_review/v1 on the demo merge
// requests finishes and posts a review GitLab's parser accepts (the sandbox
// model's review convention), which becomes merge request notes;
// developer/v1, fix_pipeline/v1 and convert_to_gl_ci/v1 change a checkout
// through an executor and open merge requests (checkWorkspaceFlows); an
// unknown flow and an invalid inline config fail at once with named errors.
func TestFlowsEndToEnd(t *testing.T) {
	e := startListenersEnv(t, "", nil)
	agentAddr := e.agentAddr(t)
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

	// code_review/v1 through the binary, as the demo's command runs it, on
	// the demo merge request !1 and the two-file !2: the sandbox model
	// (through the attested proxy) writes its labelled review of the diff's
	// first changed lines, the flow publishes it with add_comments, the
	// review passes the checker written from GitLab's parser rules and
	// becomes merge request notes.
	for i, mr := range []struct {
		iid   string
		files []string
	}{{"1", []string{"src/cart.js"}}, {"2", []string{"src/cart.js", "src/discount.js"}}} {
		id := strconv.Itoa(24 + i)
		posts := len(api.ReviewPosts())
		var flowOut strings.Builder
		st, err := runFlow(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token}, id, "code_review/v1", mr.iid, &flowOut)
		t.Logf("code review of !%s:\n%s", mr.iid, flowOut.String())
		if err != nil || st != "FINISHED" || api.Workflow(id).Status != "finished" {
			t.Fatalf("code review of !%s: %s %v (workflow %s)\n%s", mr.iid, st, err, api.Workflow(id).Status, flowOut.String())
		}
		for _, want := range []string{"[tool] build_review_merge_request_context → success", "[tool] post_duo_code_review → success", "[FINISHED]"} {
			if !strings.Contains(flowOut.String(), want) {
				t.Errorf("code review of !%s: output lacks %q:\n%s", mr.iid, want, flowOut.String())
			}
		}
		all := api.ReviewPosts()
		if len(all) != posts+1 {
			t.Fatalf("code review of !%s: %d add_comments posts, want 1", mr.iid, len(all)-posts)
		}
		post := all[len(all)-1]
		if fmt.Sprint(post.MergeRequestIID) != mr.iid || fmt.Sprint(post.WorkflowID) != id {
			t.Fatalf("code review of !%s posted for MR %v, workflow %v", mr.iid, post.MergeRequestIID, post.WorkflowID)
		}
		diffs := gitlabDiffs(t, api, mr.iid)
		if err := codereview.Check(post.ReviewOutput, codereview.LinesByFile(diffs)); err != nil {
			t.Fatalf("code review of !%s: the posted review fails the checker: %v\n%s", mr.iid, err, post.ReviewOutput)
		}
		p := codereview.Parse(post.ReviewOutput)
		var files []string
		for _, c := range p.Comments {
			files = append(files, c.File)
			if c.NewLine <= 0 || !strings.HasPrefix(c.Body, "Sandbox comment") {
				t.Errorf("code review of !%s: comment %+v", mr.iid, c)
			}
		}
		if strings.Join(files, ",") != strings.Join(mr.files, ",") || !strings.HasPrefix(p.Summary, "Sandbox review (NOT CONFIDENTIAL") {
			t.Fatalf("code review of !%s: comments on %v, summary %q", mr.iid, files, p.Summary)
		}
		notes := api.Notes("merge_requests/" + mr.iid)
		if len(notes) != 1+len(p.Comments) {
			t.Fatalf("code review of !%s: %d merge request notes, want %d", mr.iid, len(notes), 1+len(p.Comments))
		}
	}

	// developer/v1, fix_pipeline/v1 and convert_to_gl_ci/v1 with an
	// executor in a checkout of the demo project (flows_work_e2e_test.go).
	checkWorkspaceFlows(ctx, t, client, md, api)

	// The diff, the issue, the job log and the Jenkinsfile went to the
	// sandbox only encrypted.
	wire := string(e.backend.Bytes())
	for _, plain := range []string{"i.price * i.quantity", "SAVE10", "sums prices only", "4 !== 8", "docker { image"} {
		if strings.Contains(wire, plain) {
			t.Fatalf("%q (a tool result) reached the backend unencrypted", plain)
		}
	}

	// The command the demo prints: `agent flow` plays Workhorse from a
	// headers file and prints the flow's steps and the notes it posted.
	var hb strings.Builder
	for k, v := range md {
		fmt.Fprintf(&hb, "%s: %s\n", k, v[0])
	}
	cliAPI := gitlabtest.NewAPI(api.Token)
	gl := httptest.NewTLSServer(cliAPI)
	defer gl.Close()
	glCA := writeTemp(t, "flow-gitlab-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gl.Certificate().Raw})))
	r := runBin(t, nil, "agent", "flow", "--addr", agentAddr, "--ca", filepath.Join(e.state, statedir.LocalCADir, statedir.LocalCACertFile),
		"--headers", writeTemp(t, "flow-headers.txt", hb.String()), "--gitlab", gl.URL, "--gitlab-ca", glCA, "--workflow-id", "2", "code_review/v1", "1")
	r.want(t, 0, []string{"[tool] post_duo_code_review → success", "[FINISHED]", "Merge request !1 has 2 notes:",
		"Sandbox review (NOT CONFIDENTIAL", "src/cart.js:2 — Sandbox comment (not a review): the first added line of this file is `return items.reduce("}, nil)
	if len(cliAPI.ReviewPosts()) != 1 {
		t.Fatalf("agent flow CLI: %d reviews posted", len(cliAPI.ReviewPosts()))
	}

	// An unknown flow fails at once, named — a flow not implemented yet and
	// a version we do not have alike (never rerouted to developer/v1).
	for _, name := range []string{"sast_fp_detection/v1", "developer/v2"} {
		_, err = workhorse.Run(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token,
			Start: &contract.StartWorkflowRequest{WorkflowID: "22", WorkflowDefinition: name, Goal: "x"}})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `Unsupported workflow definition "`+name+`"`) ||
			!strings.Contains(st.Message(), "code_review/v1") {
			t.Fatalf("unknown flow %s: %v", name, err)
		}
	}
	// An invalid inline config is refused with the key that is wrong.
	cfg.Fields["flow"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"entry_point": structpb.NewStringValue("nowhere")}})
	_, err = workhorse.Run(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token,
		Start: &contract.StartWorkflowRequest{WorkflowID: "23", WorkflowDefinition: "ai_catalog_flow", Goal: "1", FlowConfig: cfg, FlowConfigSchemaVersion: &v1}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `flow.entry_point: "nowhere" is not a component`) {
		t.Fatalf("invalid inline flow: %v", err)
	}
}

// gitlabDiffs reads a merge request's diffs from the demo GitLab API, as
// GitLab's checker would see them.
func gitlabDiffs(t *testing.T, api *gitlabtest.API, iid string) []codereview.FileDiff {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/v4/projects/1/merge_requests/"+iid+"/diffs", nil)
	req.Header.Set("Authorization", "Bearer "+api.Token)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	var raw []struct {
		OldPath string `json:"old_path"`
		NewPath string `json:"new_path"`
		Diff    string `json:"diff"`
		NewFile bool   `json:"new_file"`
		Deleted bool   `json:"deleted_file"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &raw) != nil || len(raw) == 0 {
		t.Fatalf("diffs of !%s: HTTP %d %s", iid, rec.Code, rec.Body.String())
	}
	out := make([]codereview.FileDiff, 0, len(raw))
	for _, d := range raw {
		out = append(out, codereview.FileDiff{OldPath: d.OldPath, NewPath: d.NewPath, Diff: d.Diff, NewFile: d.NewFile, DeletedFile: d.Deleted})
	}
	return out
}
