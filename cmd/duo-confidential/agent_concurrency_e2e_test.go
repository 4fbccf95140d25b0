package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// concurrentChatSessions is how many Agentic Chat sessions run at once
// against the real binary (the target).
const concurrentChatSessions = 200

// TestAgentPlatformConcurrentSessions runs 200 Agentic Chat sessions at once
// through the real binary, each with its own workflow and a read tool round
// trip to the fake GitLab, and checks that every session ends in
// INPUT_REQUIRED with its own answer, and that neither the goal nor the tool
// results reached the backend unencrypted or the log.
func TestAgentPlatformConcurrentSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary and 200 sessions")
	}
	e := startListenersEnv(t, "", nil)
	agentAddr := e.agentAddr(t)
	tlsCfg := &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	conn, err := grpc.NewClient(agentAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := contract.NewDuoWorkflowClient(conn)

	api := gitlabtest.NewAPI("oauth-" + rand.Text())
	md := e.agentMD(t, "duo_chat", "duo_agent_platform")
	md.Set("x-gitlab-oauth-token", api.Token)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e.waitAgentPlatform(ctx, t, agentAddr, md)

	canary := letterCanary()
	before := e.backend.posts()
	var wg sync.WaitGroup
	errs := make(chan error, concurrentChatSessions)
	for i := range concurrentChatSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out strings.Builder
			st, err := workhorse.RunChat(ctx, client, workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token},
				fmt.Sprint(1000+i), canary+" call get_issue for issue 1", false, &out)
			switch {
			case err != nil || st != "INPUT_REQUIRED":
				errs <- fmt.Errorf("session %d: %s %v\n%s", i, st, err, out.String())
			case !strings.Contains(out.String(), "[tool] get_issue issue_iid=1 → success") ||
				!strings.Contains(out.String(), "Duo: Sandbox answer from the tool results"):
				errs <- fmt.Errorf("session %d: no tool round trip or answer:\n%s", i, out.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d sessions failed", failed, concurrentChatSessions)
	}
	// Each session makes at least two model calls (tool choice, answer).
	if n := e.backend.posts() - before; n < 2*concurrentChatSessions {
		t.Fatalf("the backend saw %d inference requests for %d sessions", n, concurrentChatSessions)
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
}

// agentAddr waits for the Agent Platform's listening line and returns its
// address.
func (e *listenersEnv) agentAddr(t *testing.T) string {
	t.Helper()
	var addr string
	e.serve.waitUntil(t, "the Agent Platform's listening line", func() bool {
		_, rest, ok := strings.Cut(e.serve.stderr.String(), `msg="agent platform listening" addr=`)
		if ok {
			addr, _, _ = strings.Cut(rest, " ")
		}
		return ok
	})
	return addr
}

// agentMD is Rails' metadata for an Agent Platform call with scopes and the
// sandbox's chat model selected.
func (e *listenersEnv) agentMD(t *testing.T, scopes ...string) metadata.MD {
	t.Helper()
	opts := gitlabtest.TokenOptions{Audiences: []string{agentplatform.ServiceName}, Scopes: scopes}
	tok, err := e.gitlab.Token(opts)
	if err != nil {
		t.Fatal(err)
	}
	m := metadata.MD{}
	for k, v := range e.gitlab.Headers(tok, opts) {
		m.Set(strings.ToLower(k), v...)
	}
	m.Set(agentplatform.HeaderModelMetadata, `{"provider":"openai","name":"general","api_key":"placeholder","identifier":"custom_openai/`+sandbox.ModelChat+`"}`)
	return m
}

// waitAgentPlatform waits until the served Agent Platform at addr answers
// ListTools for md (GitLab's own health check).
func (e *listenersEnv) waitAgentPlatform(ctx context.Context, t *testing.T, addr string, md metadata.MD) {
	t.Helper()
	tlsCfg := &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	e.serve.waitUntil(t, "the Agent Platform to answer ListTools", func() bool {
		_, err := agentplatform.Probe(ctx, addr, tlsCfg, md)
		return err == nil
	})
}

// letterCanary is a random secret without digits: the sandbox takes a
// message's first number as the issue number.
func letterCanary() string {
	return "CANARY-" + strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return 'X'
		}
		return r
	}, rand.Text())
}
