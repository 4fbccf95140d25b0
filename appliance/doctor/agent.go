package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"

	"github.com/duo-confidential/duo-confidential/internal/wording"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"google.golang.org/grpc/metadata"
)

func (e *env) agentAddr() listener {
	return listener{"agent_platform.listen", config.ProbeAddr(e.cfg.AgentPlatform.Listen)}
}

// agentOn skips the Agent Platform checks when it is not configured.
func (e *env) agentOn() *checkResult {
	if e.cfg.AgentPlatformEnabled() {
		return nil
	}
	r := skip("the Agent Platform is off (needs gateway.gitlab_url and agent_platform.listen)")
	return &r
}

// doctorUser is the global user id of doctor's self-issued token.
const doctorUser = "duo-confidential-doctor"

// checkAgentListTools runs GitLab's Agent Platform health check
// (DuoAgentPlatformProbe: ListTools, TLS with ALPN h2, JSON-encodable
// answer). Doctor cannot hold a GitLab token, so it signs one with the
// appliance's own keys, as a GenerateToken token would be.
func (e *env) checkAgentListTools(ctx context.Context) checkResult {
	ko, err := keys.LoadEnv(e.cfg.GatewayKeyEnv(os.Environ()))
	if err != nil {
		return fail("fix the key variables or files (see key-files)", "%v", err)
	}
	ko.NoGenerate = true
	store, err := keys.Open(e.cfg.KeysPath(), ko)
	if err != nil {
		return skip("cannot read the signing key to mint a probe token (%v); run doctor as the service user", err)
	}
	k := store.Signing()
	signer := &auth.Signer{Key: k.Private, KeyID: k.ID, Issuer: agentplatform.ServiceName, Scopes: agentplatform.TokenScopes}
	tok, _, err := signer.UserAccessToken(&auth.Claims{Scopes: []string{agentplatform.ScopeAgentPlatform}, GlobalUserID: doctorUser}, nil)
	if err != nil {
		return fail("see the message", "mint a probe token: %v", err)
	}
	md := metadata.Pairs("authorization", "Bearer "+tok, "x-gitlab-authentication-type", "oidc", "x-gitlab-global-user-id", doctorUser)
	tc, err := e.cfg.ListenerClientTLS()
	if err != nil {
		return fail("see the message", "%v", err)
	}
	l := e.agentAddr()
	n, err := agentplatform.Probe(ctx, l.addr, tc, md)
	if err != nil {
		return fail("start the appliance, check agent_platform.listen and the TLS checks; GitLab's Run health check reports the same", "%v", err)
	}
	return pass("ListTools on %s (%s) answered %d tools, as GitLab's Agent Platform probe needs", l.addr, l.key, n)
}

// checkAgentSystemRoots checks what Workhorse needs: it verifies the Agent
// Platform's certificate against the GitLab server's system roots only.
func (e *env) checkAgentSystemRoots(ctx context.Context) checkResult {
	tc, err := e.cfg.ListenerClientTLS()
	if err != nil {
		return fail("see the message", "%v", err)
	}
	if tc == nil {
		return warn("set tls.source, or set DUO_AGENT_PLATFORM_SERVICE_SECURE=false in GitLab's environment (plaintext gRPC)",
			"the Agent Platform serves plaintext (tls.source off); Rails and Workhorse dial TLS unless told otherwise")
	}
	sys, err := x509.SystemCertPool()
	if err != nil {
		return skip("no system trust store here: %v", err)
	}
	l := e.agentAddr()
	var d net.Dialer
	conn, err := (&tls.Dialer{NetDialer: &d, Config: &tls.Config{RootCAs: sys, ServerName: tc.ServerName, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}}).DialContext(ctx, "tcp", l.addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return notListening(l, err)
		}
		return warn("add the CA that signs it (local CA: `duo-confidential tls ca-cert`) to the GitLab server's system trust store "+
			"(Debian/Ubuntu: /usr/local/share/ca-certificates + update-ca-certificates) and restart GitLab: Workhorse trusts only the system roots",
			"%s (%s) as %q does not verify against this machine's system roots: %v", l.addr, l.key, tc.ServerName, unwrapOp(err))
	}
	defer conn.Close()
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
		return fail("upgrade the appliance: the Agent Platform must announce h2 in ALPN", "%s negotiated ALPN %q, gRPC clients need h2", l.addr, wording.OrDash(p))
	}
	return pass("%s (%s) as %q verifies against the system roots with ALPN h2, as Workhorse needs", l.addr, l.key, tc.ServerName)
}
