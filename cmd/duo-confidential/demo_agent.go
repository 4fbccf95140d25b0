//go:build !duo_production

package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const (
	defaultDemoAgent = "127.0.0.1:50052"
	// demoAgentHeadersFile holds the metadata Rails gives Workhorse for an
	// Agentic Chat session (token, headers, model metadata, OAuth token).
	demoAgentHeadersFile = "agent-platform-headers.txt"
	demoGitLabCAFile     = "demo-gitlab-ca.pem"
	// demoAgentMessage makes the sandbox model call two read tools and one
	// write tool (which needs approval), in that order.
	demoAgentMessage = "What is wrong in issue 1? call get_issue, then call list_issue_notes, then call create_work_item_note"
)

// demoAgentListener opens the demo's Agent Platform listener.
func (c *DemoCmd) demoAgentListener() (net.Listener, error) {
	addr := c.AgentListen
	if addr == "" {
		addr = defaultDemoAgent
		if c.Check {
			addr = "127.0.0.1:0"
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (choose another address with --agent-platform-listen)", addr, err)
	}
	return ln, nil
}

// newDemoAPI is the demo GitLab's REST/GraphQL API with a random user
// OAuth token.
func newDemoAPI() (*gitlabtest.API, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return gitlabtest.NewAPI(hex.EncodeToString(b[:])), nil
}

// demoAgentMetadata is what Rails hands Workhorse for web Agentic Chat: a
// self-signed instance token for the Agent Platform's audience, GitLab's
// headers, the self-hosted model's metadata and the user's OAuth token.
func demoAgentMetadata(iss *gitlabtest.Issuer, oauth string) (metadata.MD, error) {
	opts := gitlabtest.TokenOptions{Audiences: []string{agentplatform.ServiceName}, Scopes: []string{"duo_chat", "duo_agent_platform"}}
	tok, err := iss.Token(opts)
	if err != nil {
		return nil, err
	}
	md := metadata.MD{}
	for k, v := range iss.Headers(tok, opts) {
		md.Set(strings.ToLower(k), v...)
	}
	md.Set("x-gitlab-version", "18.8.0")
	md.Set("x-gitlab-client-type", "browser")
	md.Set(agentplatform.HeaderModelMetadata, fmt.Sprintf(`{"provider":"openai","name":"general","endpoint":"https://ignored.invalid/v1","api_key":"placeholder","identifier":"custom_openai/%s"}`, sandbox.ModelChat))
	md.Set("x-gitlab-oauth-token", oauth)
	return md, nil
}

// writeDemoAgentFiles writes the metadata file and the demo GitLab's CA
// for `agent chat`.
func writeDemoAgentFiles(dir string, md metadata.MD, gitlabCA []byte) (headers, ca string, err error) {
	names := make([]string, 0, len(md))
	for k := range md {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\n", k, md.Get(k)[0])
	}
	headers = filepath.Join(dir, demoAgentHeadersFile)
	if err := statedir.WriteFile(headers, []byte(b.String()), statedir.SecretMode); err != nil {
		return "", "", err
	}
	ca = filepath.Join(dir, demoGitLabCAFile)
	if err := statedir.WriteFile(ca, gitlabCA, 0o644); err != nil {
		return "", "", err
	}
	return headers, ca, nil
}

// printDemoAgent prints the one-line command that plays Workhorse.
func printDemoAgent(out io.Writer, a *appliance.Appliance, addr, headers, gitlabURL, gitlabCA string) {
	ca := ""
	if f := a.CACertificateFile(); f != "" {
		ca = " --ca " + f
	}
	fmt.Fprintf(out, `
The Duo Agent Platform (gRPC DuoWorkflow) listens on %[1]s. One Agentic Chat session, with this
command playing Workhorse against the demo GitLab (tool calls, one approval, the streamed answer):

  duo-confidential agent chat --addr %[1]s%[2]s --headers %[3]s \
    --gitlab %[4]s --gitlab-ca %[5]s '%[6]s'
`, addr, ca, headers, gitlabURL, gitlabCA, demoAgentMessage)
}

// checkDemoAgent runs that session in-process (demo --check).
func checkDemoAgent(ctx context.Context, out io.Writer, a *appliance.Appliance, addr string, md metadata.MD, api *gitlabtest.API) error {
	conn, err := dialDemoAgent(a, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	fmt.Fprintln(out, "\nAn Agentic Chat session through the Agent Platform (this process plays Workhorse):")
	status, err := workhorse.RunChat(ctx, contract.NewDuoWorkflowClient(conn), workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token},
		"1", demoAgentMessage, false, out)
	if err != nil {
		return fmt.Errorf("demo agent chat: %w", err)
	}
	if status != "INPUT_REQUIRED" {
		return fmt.Errorf("demo agent chat ended with %s", status)
	}
	if notes := api.Notes("issues/1"); len(notes) < 2 {
		return fmt.Errorf("demo agent chat: the approved note was not written")
	}
	return nil
}

// dialDemoAgent connects to the demo's Agent Platform, trusting the
// appliance's local CA.
func dialDemoAgent(a *appliance.Appliance, addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if pem := a.CACertificatePEM(); pem != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "localhost"})
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(agentplatform.MaxMessageBytes), grpc.MaxCallSendMsgSize(agentplatform.MaxMessageBytes)))
}
