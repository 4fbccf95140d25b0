package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// agentWorker calls the Agent Platform through HAProxy (TCP, TLS end to
// end) until stop: GitLab's health call (ListTools) and GenerateToken, each
// with a fresh token, over one gRPC connection that follows the replicas as
// they come and go. Calls wait for a connection rather than fail fast, as
// a client should while a load balancer moves it.
func (l *haLoad) agentWorker(maxCalls int) {
	defer l.wg.Done()
	c := l.c
	conn, err := grpc.NewClient(c.agentFront, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: c.caPool, ServerName: "localhost"})))
	if err != nil {
		l.record(haRequest{kind: "agent-rpc", start: time.Now(), end: time.Now(), err: err.Error()})
		return
	}
	defer conn.Close()
	client := contract.NewDuoWorkflowClient(conn)
	for i := 0; i < maxCalls; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		r := haRequest{kind: "agent-rpc", start: time.Now()}
		r.err = agentCall(c, client, i%2 == 0)
		r.end = time.Now()
		l.record(r)
		time.Sleep(20 * time.Millisecond)
	}
}

// agentCall makes one ListTools or GenerateToken call; "" when it worked.
func agentCall(c *haCluster, client contract.DuoWorkflowClient, listTools bool) string {
	opts := gitlabtest.TokenOptions{Audiences: []string{agentplatform.ServiceName}, Scopes: []string{"duo_agent_platform", "duo_chat"}}
	tok, err := c.gitlab.Token(opts)
	if err != nil {
		return err.Error()
	}
	md := metadata.MD{}
	for k, v := range c.gitlab.Headers(tok, opts) {
		md.Set(strings.ToLower(k), v...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, md)
	if listTools {
		tools, err := client.ListTools(ctx, &contract.ListToolsRequest{}, grpc.WaitForReady(true))
		if err != nil {
			return "ListTools: " + err.Error()
		}
		if len(tools.Tools) < 20 {
			return fmt.Sprintf("ListTools: only %d tools", len(tools.Tools))
		}
		return ""
	}
	t, err := client.GenerateToken(ctx, &contract.GenerateTokenRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return "GenerateToken: " + err.Error()
	}
	if t.Token == "" {
		return "GenerateToken: empty token"
	}
	return ""
}
