package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// AgentCmd groups the Agent Platform client commands.
type AgentCmd struct {
	Chat AgentChatCmd `cmd:"" help:"Play Workhorse for one Agentic Chat message: run the session, execute its GitLab API calls, approve (or reject) tool calls, print the streamed answer."`
	Flow AgentFlowCmd `cmd:"" help:"Play Workhorse for one flow session (code_review/v1, developer/v1, fix_pipeline/v1, convert_to_gl_ci/v1): run it, execute its GitLab API calls, print its progress and, for a code review, the merge request's notes."`
}

// AgentChatCmd runs one Agentic Chat exchange against an Agent Platform.
type AgentChatCmd struct {
	agentClient `embed:""`
	Reject      bool          `help:"Reject tool calls that need approval instead of approving them."`
	Timeout     time.Duration `help:"Give up after this long." default:"2m"`
	Message     string        `arg:"" help:"The chat message."`
}

// agentClient is what `agent chat` and `agent flow` share: how to reach
// the Agent Platform, the headers Rails would send and the GitLab the
// session's API calls go to.
type agentClient struct {
	Addr       string `help:"Agent Platform address, HOST:PORT (agent_platform.listen)." default:"127.0.0.1:50052"`
	CA         string `help:"PEM file of the CA that signed the Agent Platform's certificate (default: system roots)." placeholder:"FILE"`
	Plaintext  bool   `help:"Connect without TLS (tls.source: off)."`
	Headers    string `help:"File of 'Name: value' lines Rails would send (authorization, x-gitlab-*, x-gitlab-agent-platform-model-metadata, x-gitlab-oauth-token)." required:"" placeholder:"FILE"`
	GitLab     string `name:"gitlab" help:"GitLab base URL the session's API calls go to, with the user's x-gitlab-oauth-token." required:"" placeholder:"URL"`
	GitLabCA   string `name:"gitlab-ca" help:"PEM file of the CA GitLab's certificate chains to (default: system roots)." placeholder:"FILE"`
	WorkflowID string `name:"workflow-id" help:"Rails workflow id." default:"1"`
}

// dial connects to the Agent Platform and prepares the Workhorse side of a
// session; the caller closes the connection.
func (c *agentClient) dial() (*grpc.ClientConn, workhorse.Session, error) {
	md, err := readHeaderFile(c.Headers)
	if err != nil {
		return nil, workhorse.Session{}, err
	}
	gitlab, err := gitlabProxy(c.GitLab, c.GitLabCA)
	if err != nil {
		return nil, workhorse.Session{}, err
	}
	creds := insecure.NewCredentials()
	if !c.Plaintext {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CA != "" {
			if tc.RootCAs, err = poolFrom(c.CA); err != nil {
				return nil, workhorse.Session{}, err
			}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(agentplatform.MaxMessageBytes), grpc.MaxCallSendMsgSize(agentplatform.MaxMessageBytes)))
	if err != nil {
		return nil, workhorse.Session{}, fmt.Errorf("agent platform %s: %w", c.Addr, err)
	}
	oauth := ""
	if v := md.Get("x-gitlab-oauth-token"); len(v) > 0 {
		oauth = v[0]
	}
	return conn, workhorse.Session{Metadata: md, GitLab: gitlab, OAuthToken: oauth}, nil
}

// Run plays the session and prints it.
func (c *AgentChatCmd) Run(g *Globals) error {
	conn, sess, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(g.Context(), c.Timeout)
	defer cancel()
	status, err := workhorse.RunChat(ctx, contract.NewDuoWorkflowClient(conn),
		sess, c.WorkflowID, c.Message, c.Reject, g.stdout())
	if err != nil {
		return fmt.Errorf("agent chat: %w", err)
	}
	if status != "INPUT_REQUIRED" {
		return fmt.Errorf("agent chat ended with status %s", status)
	}
	return nil
}

// readHeaderFile reads "Name: value" lines into gRPC metadata (names lower
// case, as gRPC sends them).
func readHeaderFile(path string) (metadata.MD, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --headers: %w", err)
	}
	md := metadata.MD{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("--headers %s: a line is not 'Name: value'", path)
		}
		md.Append(strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read --headers: %w", err)
	}
	if len(md.Get("authorization")) == 0 {
		return nil, errors.New("--headers has no authorization line")
	}
	return md, nil
}

func poolFrom(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// gitlabProxy forwards the session's API calls to GitLab, as Workhorse
// does in-process.
func gitlabProxy(base, caFile string) (http.Handler, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--gitlab %q is not an http(s) URL", base)
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if caFile != "" {
		if tr.TLSClientConfig.RootCAs, err = poolFrom(caFile); err != nil {
			return nil, err
		}
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr
	return rp, nil
}
