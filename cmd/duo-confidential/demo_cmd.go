//go:build !duo_production

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// DemoCmd runs the appliance's main job on an embedded default: the GitLab
// AI Gateway and the attesting proxy in front of a sandbox backend, with a
// demo GitLab token issuer, all in one process on loopback. The sandbox's evidence is test-signed: nothing is confidential,
// and every output says so.
type DemoCmd struct {
	Listen   string `help:"Address of the demo proxy." default:"127.0.0.1:8080"`
	Gateway  string `name:"gateway-listen" help:"Address of the demo GitLab AI Gateway." default:"127.0.0.1:5052"`
	Platform string `help:"Evidence the sandbox presents: tdx or sev-snp." enum:"tdx,sev-snp" default:"tdx"`
	Check    bool   `help:"Send a chat request through the proxy and the printed gateway requests, print the answers and exit (a smoke test)."`
	// AdminListen is empty by default: 127.0.0.1:5053, or a free port with --check.
	AdminListen string `name:"admin-listen" help:"Address of the demo admin UI (default 127.0.0.1:5053; a free port with --check)."`
	// AgentListen is empty by default: 127.0.0.1:50052, or a free port with --check.
	AgentListen string `name:"agent-platform-listen" help:"Address of the demo Agent Platform (gRPC; default 127.0.0.1:50052; a free port with --check)."`
}

const demoBanner = `================================================================
 duo-confidential DEMO — sandbox backend, NOT CONFIDENTIAL
 The backend below runs in this process with test-signed
 evidence. The proxy attests it and encrypts every request to it
 exactly as it would for a real Privatemode backend, but this
 proves nothing about hardware. The GitLab whose tokens the
 gateway accepts is a DEMO issuer in this process, not GitLab.
================================================================
`

// Run starts sandbox, demo GitLab issuer, proxy and gateway, waits until
// they are ready, prints the attestation report and example requests, and
// serves until interrupted.
func (c *DemoCmd) Run(g *Globals) error {
	log := g.Logger()
	out := g.stdout()
	sb, err := sandbox.New(sandbox.Options{Platform: c.Platform, Logger: log.With("part", "sandbox")})
	if err != nil {
		return err
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sandbox listener: %w", err)
	}
	go func() { _ = sb.Serve(sln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sb.Shutdown(ctx)
	}()
	trust, err := appliance.SandboxFor(sb, "http://"+sln.Addr().String())
	if err != nil {
		return err
	}
	state, err := demoStateDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		return err
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo GitLab listener: %w", err)
	}
	api, err := newDemoAPI()
	if err != nil {
		return err
	}
	gitlab, err := gitlabtest.ServeWithAPI(iss, api, iln)
	if err != nil {
		return err
	}
	defer gitlab.Close()
	cfg := config.Default()
	cfg.StateDir = state
	cfg.Proxy.Listen = c.Listen
	cfg.Gateway.Listen = c.Gateway
	cfg.Gateway.GitLabURL = gitlab.URL
	cfg.Gateway.Models = config.GatewayModels{Default: sandbox.ModelChat, CodeCompletions: sandbox.ModelCode, CodeGenerations: sandbox.ModelCode}
	// The sandbox code model fills the middle from prompt + suffix.
	cfg.Gateway.CompletionFormat = "suffix"
	aln, adminPassword, err := c.demoAdmin(cfg)
	if err != nil {
		return err
	}
	defer aln.Close()
	agln, err := c.demoAgentListener()
	if err != nil {
		return err
	}
	defer agln.Close()
	cfg.AgentPlatform.Listen = agln.Addr().String()
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another address with --listen)", c.Listen, err)
	}
	gln, err := net.Listen("tcp", c.Gateway)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s: %w (choose another address with --gateway-listen)", c.Gateway, err)
	}
	connect, err := setupDemoGitLab(cfg, gln.Addr(), ln.Addr())
	if err != nil {
		return err
	}
	a, err := appliance.New(appliance.Options{Config: cfg, Logger: log, Version: version, Sandbox: trust,
		APIKey: sandboxAPIKey, GitLabClient: gitlab.Client})
	if err != nil {
		ln.Close()
		gln.Close()
		return err
	}
	client, curl, err := demoClient(a)
	if err != nil {
		return err
	}
	if err := connect.serveAdminAPI(cfg, iss, gitlab, client); err != nil {
		return err
	}
	ctx, stop := context.WithCancel(g.Context())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- a.RunListeners(ctx, appliance.Listeners{Proxy: ln, Gateway: gln, AgentPlatform: agln, Admin: aln}, 5*time.Second)
	}()
	if err := waitReady(ctx, a.GatewayReady, 30*time.Second); err != nil {
		return err
	}
	headers, rails, err := writeDemoHeaders(state, iss)
	if err != nil {
		return err
	}
	go refreshDemoHeaders(ctx, state, iss)
	agentMD, err := demoAgentMetadata(iss, api.Token)
	if err != nil {
		return err
	}
	agentHeaders, gitlabCA, err := writeDemoAgentFiles(state, agentMD, gitlab.CertPEM)
	if err != nil {
		return err
	}
	gwBase, base, adminBase := a.URL(gln), a.URL(ln), a.URL(aln)
	fmt.Fprint(out, demoBanner)
	if st := a.Status(); st != nil && st.Attestation != nil {
		fmt.Fprintf(out, "\nThe proxy attested the sandbox backend (%s) before accepting requests:\n\n", c.Platform)
		if err := printResult(out, st.Attestation, resultView{TestRoots: true}); err != nil {
			return err
		}
	}
	if c.Check {
		reply, err := demoRequest(client, base)
		if err == nil {
			fmt.Fprintf(out, "\nA chat request went through the proxy, encrypted to the sandbox:\n%s\n", reply)
			if err = checkDemoGateway(out, client, gwBase, rails); err == nil {
				err = checkDemoAdmin(out, client, adminBase, adminPassword)
			}
			if err == nil {
				err = checkDemoAgent(ctx, out, a, agln.Addr().String(), agentMD, api)
			}
			if err == nil {
				err = checkDemoFlow(ctx, out, a, agln.Addr().String(), agentMD, api)
			}
			if err == nil {
				err = connect.check(ctx, out, cfg, gitlab.Client)
			}
		} else {
			err = fmt.Errorf("demo request through the proxy: %w", err)
		}
		stop()
		if derr := <-done; err == nil && derr != nil {
			err = fmt.Errorf("demo shutdown: %w", derr)
		}
		if err == nil {
			// Every request above left a receipt; the appliance signed the
			// chain head at shutdown. Verify them as an operator would.
			fmt.Fprintf(out, "\nEvery request left a receipt. Verifying them with\n  %s receipts verify --state-dir %s\n\n", progName, state)
			err = (&ReceiptsVerifyCmd{receiptsWindow: receiptsWindow{StateDir: state}}).Run(g)
		}
		return err
	}
	fmt.Fprintf(out, `
Both listeners serve TLS with a certificate from the appliance's local CA
(tls.source: local-ca), as a production install does by default. Its
certificate, which clients must trust, is
  %[5]s

The proxy listens on %[1]s (OpenAI-compatible). Try, in another terminal:

  curl %[6]s %[1]s/v1/models
  curl %[6]s %[1]s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"%[2]s","messages":[{"role":"user","content":"Hello from GitLab"}]}'
  curl %[6]sN %[1]s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"%[2]s","stream":true,"messages":[{"role":"user","content":"Stream please"}],"max_tokens":12}'
  curl %[6]s %[1]s/v1/completions -H 'Content-Type: application/json' \
    -d '{"model":"%[3]s","prompt":"func add(a, b int) int {","suffix":"}","max_tokens":8}'
  curl %[6]s %[1]s/v1/embeddings -H 'Content-Type: application/json' \
    -d '{"model":"%[4]s","input":"confidential code"}'
  curl %[6]s %[1]s/readyz
`, base, sandbox.ModelChat, sandbox.ModelCode, sandbox.ModelEmbed, a.CACertificateFile(), curl)
	printDemoGateway(out, gwBase, headers, curl)
	printDemoAdmin(out, adminBase, adminPassword)
	printDemoAgent(out, a, agln.Addr().String(), agentHeaders, gitlab.URL, gitlabCA)
	printDemoFlow(out, a, agln.Addr().String(), agentHeaders, gitlab.URL, gitlabCA)
	connect.print(out)
	fmt.Fprintf(out, "\nEvery model request leaves a signed, hash-chained receipt (no content). Check them:\n  %s receipts verify --state-dir %s\n", progName, state)
	fmt.Fprint(out, "\nEverything above is a sandbox: NOT CONFIDENTIAL. Press Ctrl-C to stop.\n")
	return <-done
}

// waitReady polls readiness: the first attestation and exchange take a
// moment, and the demo should only print commands that will work.
func waitReady(ctx context.Context, ready func() (bool, string), limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok, reason := ready()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo appliance did not become ready: %s", reason)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoClient returns an HTTPS client that trusts the appliance's local CA,
// and the curl flags that do the same.
func demoClient(a *appliance.Appliance) (*http.Client, string, error) {
	pem := a.CACertificatePEM()
	if pem == nil {
		return &http.Client{Timeout: 30 * time.Second}, "-s", nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, "", fmt.Errorf("the local CA certificate does not parse")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}, "--cacert " + a.CACertificateFile() + " -s", nil
}

// demoRequest sends one chat completion through the proxy.
func demoRequest(client *http.Client, base string) (string, error) {
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Hello from the duo-confidential demo"}],"max_tokens":8}`, sandbox.ModelChat)
	resp, err := client.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}
