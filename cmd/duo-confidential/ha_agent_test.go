package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// agentWorker calls the Agent Platform through HAProxy (TCP, TLS end to
// end) until stop: GitLab's health call (ListTools) and GenerateToken, each
// with a fresh token, over one gRPC connection (dialAgent) that follows the
// replicas as they come and go.
func (l *haLoad) agentWorker(maxCalls int) {
	defer l.wg.Done()
	c := l.c
	conn, err := c.dialAgent()
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
		var p peer.Peer
		r.err = agentCall(recordPeer(context.Background(), &p), c, client, i%2 == 0)
		r.end, r.localAddr = time.Now(), localAddr(&p)
		l.record(r)
		time.Sleep(20 * time.Millisecond)
	}
}

// agentCall makes one ListTools or GenerateToken call; "" when it worked.
func agentCall(ctx context.Context, c *haCluster, client contract.DuoWorkflowClient, listTools bool) string {
	md, err := c.agentMD()
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, md)
	if listTools {
		tools, err := client.ListTools(ctx, &contract.ListToolsRequest{})
		if err != nil {
			return "ListTools: " + err.Error()
		}
		if len(tools.Tools) < 20 {
			return fmt.Sprintf("ListTools: only %d tools", len(tools.Tools))
		}
		return ""
	}
	t, err := client.GenerateToken(ctx, &contract.GenerateTokenRequest{})
	if err != nil {
		return "GenerateToken: " + err.Error()
	}
	if t.Token == "" {
		return "GenerateToken: empty token"
	}
	return ""
}

// agentMD is what Rails sends with an Agent Platform call: a fresh token
// for the Agent Platform and the GitLab headers.
func (c *haCluster) agentMD() (metadata.MD, error) {
	opts := gitlabtest.TokenOptions{Audiences: []string{agentplatform.ServiceName}, Scopes: []string{"duo_agent_platform", "duo_chat"}}
	tok, err := c.gitlab.Token(opts)
	if err != nil {
		return nil, err
	}
	md := metadata.MD{}
	for k, v := range c.gitlab.Headers(tok, opts) {
		md.Set(strings.ToLower(k), v...)
	}
	return md, nil
}
