package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestAgentPlatformEndToEnd runs the real binary with the Agent Platform
// on, plays GitLab's admin health check (ListTools), GenerateToken, the
// negative auth cases, and one Agentic Chat session through the attested
// proxy to the sandbox, then checks that the goal, tool results and
// history never reached the backend unencrypted nor any log.
func TestAgentPlatformEndToEnd(t *testing.T) {
	// startProc gives the Agent Platform a free port; the log names it.
	e := startListenersEnv(t, "", nil)
	agentAddr := e.agentAddr(t)
	conn, err := grpc.NewClient(agentAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := contract.NewDuoWorkflowClient(conn)

	md := func(scopes ...string) metadata.MD { return e.agentMD(t, scopes...) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	call := func(m metadata.MD) context.Context { return metadata.NewOutgoingContext(ctx, m) }

	// GitLab's health probe, as Rails runs it.
	e.serve.waitUntil(t, "the Agent Platform to answer ListTools", func() bool {
		_, err := agentplatform.Probe(ctx, agentAddr, &tls.Config{RootCAs: e.roots, ServerName: "localhost"}, md("duo_agent_platform"))
		return err == nil
	})
	tools, err := client.ListTools(call(md("duo_agent_platform")), &contract.ListToolsRequest{})
	if err != nil || len(tools.Tools) < 20 {
		t.Fatalf("ListTools: %d tools, %v", len(tools.GetTools()), err)
	}
	tok, err := client.GenerateToken(call(md("duo_agent_platform", "duo_chat")), &contract.GenerateTokenRequest{})
	if err != nil || tok.Token == "" || tok.ExpiresAt <= time.Now().Unix() {
		t.Fatalf("GenerateToken: %v %v", tok, err)
	}
	// Negative auth: no token, a token for the AI gateway's audience, a DWS
	// token minting another.
	noAuth := md("duo_agent_platform")
	noAuth.Delete("authorization")
	aigw, _ := e.gitlab.Token(gitlabtest.TokenOptions{})
	wrongAud := md("duo_agent_platform")
	wrongAud.Set("authorization", "Bearer "+aigw)
	dws := md()
	dws.Set("authorization", "Bearer "+tok.Token)
	for _, c := range []struct {
		name string
		md   metadata.MD
		code codes.Code
		msg  string
	}{
		{"no token", noAuth, codes.Unauthenticated, "No authorization header presented"},
		{"AI gateway audience", wrongAud, codes.Unauthenticated, "Forbidden by auth provider"},
	} {
		_, err := client.ListTools(call(c.md), &contract.ListToolsRequest{})
		if st := status.Convert(err); st.Code() != c.code || st.Message() != c.msg {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := client.GenerateToken(call(dws), &contract.GenerateTokenRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("DWS token minting: %v", err)
	}

	// A model the backend lists without tool_calling is refused.
	codeMD := md("duo_chat")
	codeMD.Set(agentplatform.HeaderModelMetadata, `{"provider":"openai","name":"general","identifier":"custom_openai/`+sandbox.ModelCode+`"}`)
	if st, err := client.ExecuteWorkflow(call(codeMD)); err == nil {
		_ = st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StartRequest{StartRequest: &contract.StartWorkflowRequest{WorkflowID: "9", WorkflowDefinition: "chat", Goal: "x"}}})
		_, err = st.Recv()
		if s := status.Convert(err); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "cannot call tools") {
			t.Errorf("code model for chat: %v", err)
		}
	}

	// One Agentic Chat session with a secret goal; the demo GitLab's issue
	// text is the tool result that must stay secret too.
	canary := letterCanary()
	api := gitlabtest.NewAPI("oauth-" + rand.Text())
	chatMD := md("duo_chat")
	chatMD.Set("x-gitlab-oauth-token", api.Token)
	var out strings.Builder
	st, err := workhorse.RunChat(ctx, client, workhorse.Session{Metadata: chatMD, GitLab: api, OAuthToken: api.Token},
		"3", canary+" call get_issue for issue 1 then call create_work_item_note", false, &out)
	if err != nil || st != "INPUT_REQUIRED" {
		t.Fatalf("chat: %s %v\n%s", st, err, out.String())
	}
	for _, want := range []string{"[tool] get_issue issue_iid=1 → success", "[approval needed] create_work_item_note", "[tool] create_work_item_note", "Duo: Sandbox answer from the tool results"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("chat output lacks %q:\n%s", want, out.String())
		}
	}
	if n := len(api.Notes("issues/1")); n != 2 {
		t.Fatalf("approved note not written: %d notes", n)
	}
	// The user stopped the workflow in the web UI while no session ran
	// it: resuming reads the queued human event, stops and acknowledges it.
	stopID := api.QueueEvent("3", "stop", "")
	res, err := workhorse.Run(ctx, client, workhorse.Session{Metadata: chatMD, GitLab: api, OAuthToken: api.Token,
		Start: &contract.StartWorkflowRequest{WorkflowID: "3", WorkflowDefinition: "chat"}})
	if err != nil || res.Last.GetStatus() != "STOPPED" || api.Workflow("3").Status != "stopped" || api.EventStatuses("3")[stopID] != "delivered" {
		t.Fatalf("resume with a queued stop: %v %v, workflow %s, events %v", res.Last, err, api.Workflow("3").Status, api.EventStatuses("3"))
	}
	if e.backend.posts() < 3 {
		t.Fatalf("the backend saw %d inference requests", e.backend.posts())
	}
	wire := string(e.backend.Bytes())
	logs := e.serve.stderr.String() + e.serve.stdout.String()
	for _, secret := range []string{canary, "Cart total ignores quantity", "sums prices only"} {
		if strings.Contains(wire, secret) {
			t.Errorf("%q reached the backend unencrypted", secret)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("%q is in the appliance's log", secret)
		}
	}
	// The CLI plays Workhorse the same way, from a headers file.
	var hb strings.Builder
	for k, v := range chatMD {
		fmt.Fprintf(&hb, "%s: %s\n", k, v[0])
	}
	gl := httptest.NewServer(api)
	defer gl.Close()
	r := runBin(t, nil, "agent", "chat", "--addr", agentAddr, "--ca", filepath.Join(e.state, statedir.LocalCADir, statedir.LocalCACertFile),
		"--headers", writeTemp(t, "agent-headers.txt", hb.String()), "--gitlab", gl.URL, "--workflow-id", "4", "--reject",
		"call create_work_item_note on issue 1")
	if r.code != 0 || !strings.Contains(r.stdout, "[approval needed] create_work_item_note") || !strings.Contains(r.stdout, "rejecting") || !strings.Contains(r.stdout, "[INPUT_REQUIRED]") {
		t.Fatalf("agent chat CLI: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := len(api.Notes("issues/1")); n != 2 {
		t.Fatalf("a rejected note was written: %d notes", n)
	}
	if !strings.Contains(logs, "agent platform listening") {
		t.Errorf("no listening log line:\n%s", logs)
	}
	checkAgentReceipts(t, e.state, e.backend.posts(), canary, "Cart total ignores quantity")
}

// TestAgentPlatformGitLabDownAtStart: with GitLab's keys unreachable the
// binary starts anyway and the Agent Platform answers UNAVAILABLE (which
// Workhorse retries); once GitLab is back, the same call succeeds.
func TestAgentPlatformGitLabDownAtStart(t *testing.T) {
	var up atomic.Bool
	e := startListenersEnvNoWait(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !up.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	agentAddr := e.agentAddr(t)
	opts := gitlabtest.TokenOptions{Audiences: []string{agentplatform.ServiceName}, Scopes: []string{"duo_agent_platform"}}
	tok, _ := e.gitlab.Token(opts)
	md := metadata.MD{}
	for k, v := range e.gitlab.Headers(tok, opts) {
		md.Set(strings.ToLower(k), v...)
	}
	tc := &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := agentplatform.Probe(ctx, agentAddr, tc, md)
	if status.Code(errors.Unwrap(err)) != codes.Unavailable || !strings.Contains(err.Error(), "Waiting for GitLab keys") {
		t.Fatalf("while GitLab is down: %v", err)
	}
	up.Store(true)
	e.serve.waitUntil(t, "ListTools to succeed once GitLab is up", func() bool {
		_, err := agentplatform.Probe(ctx, agentAddr, tc, md)
		return err == nil
	})
}

// TestAgentPlatformDrainOnSIGTERM: a session running when the process is
// told to stop goes on through the drain: its client answers the tool
// call it was waiting on after SIGTERM, and the session still ends
// INPUT_REQUIRED with the agent's answer; then the process exits cleanly.
// (A session that outlasts the drain is stopped with a STOPPED checkpoint
// and UNAVAILABLE: gateway/agentplatform's TestShutdownStopsSessionsAtTheGraceLimit.)
func TestAgentPlatformDrainOnSIGTERM(t *testing.T) {
	e := startListenersEnv(t, "", nil)
	agentAddr := e.agentAddr(t)
	conn, err := grpc.NewClient(agentAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := gitlabtest.NewAPI("oauth-" + rand.Text())
	md := e.agentMD(t, "duo_chat")
	md.Set("x-gitlab-oauth-token", api.Token)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.waitAgentPlatform(ctx, t, agentAddr, e.agentMD(t, "duo_agent_platform"))
	// The session's first GitLab call waits until the drain has begun.
	gitlab := &parked{h: api, arrived: make(chan struct{}), release: make(chan struct{})}
	type result struct {
		status string
		err    error
		out    string
	}
	done := make(chan result, 1)
	go func() {
		var out strings.Builder
		st, err := workhorse.RunChat(ctx, contract.NewDuoWorkflowClient(conn), workhorse.Session{Metadata: md, GitLab: gitlab, OAuthToken: api.Token},
			"1", "call get_issue for issue 1", false, &out)
		done <- result{st, err, out.String()}
	}()
	select {
	case <-gitlab.arrived:
	case r := <-done:
		t.Fatalf("the session ended before its first GitLab call: %s %v\n%s", r.status, r.err, r.out)
	}
	if err := e.serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.serve.waitUntil(t, "the drain to begin", func() bool {
		return strings.Contains(e.serve.stderr.String(), "shutting down: draining in-flight requests")
	})
	close(gitlab.release)
	r := <-done
	if r.err != nil || r.status != "INPUT_REQUIRED" || !strings.Contains(r.out, "[tool] get_issue issue_iid=1 → success") {
		t.Fatalf("the session running at SIGTERM: %s %v\n%s", r.status, r.err, r.out)
	}
	if code := e.serve.wait(t); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, e.serve.stderr.String())
	}
}
