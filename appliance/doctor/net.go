package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/wording"
	"github.com/duo-confidential/duo-confidential/jwks"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// listener names one of the appliance's listeners for the online checks.
type listener struct{ key, addr string }

func (e *env) proxyAddr() listener {
	return listener{"proxy.listen", config.ProbeAddr(e.cfg.Proxy.Listen)}
}

func (e *env) gatewayAddr() listener {
	return listener{"gateway.listen", config.ProbeAddr(e.cfg.Gateway.Listen)}
}

// baseURL is how this machine reaches a listener; the TLS configuration
// names the server as GitLab does (ServerName), whatever address is dialled.
func (e *env) baseURL(l listener) string {
	if e.cfg.TLS.Source == apptls.SourceOff {
		return "http://" + l.addr
	}
	return "https://" + l.addr
}

// gatewayOn reports the gateway as not configured, with status st, when
// gateway.gitlab_url is empty.
func (e *env) gatewayOn(st checkStatus) func() *checkResult {
	return func() *checkResult {
		if e.cfg.Gateway.Enabled() {
			return nil
		}
		if st == statusWarn {
			r := warn("set gateway.gitlab_url and gateway.models (docs/operations.md \"Connecting GitLab\")",
				"gateway.gitlab_url is not set: the gateway is off and GitLab Duo is not served")
			return &r
		}
		r := skip("the gateway is off (gateway.gitlab_url not set)")
		return &r
	}
}

// listenerClient verifies the appliance's certificates as GitLab would
// (ListenerClientTLS) and never goes through HTTPS_PROXY.
func (e *env) listenerClient() (*http.Client, error) {
	tc, err := e.cfg.ListenerClientTLS()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}, nil
}

// checkHandshake connects to a running listener and reports what the TLS
// handshake gives: version, ALPN, certificate names, issuer and expiry.
func (e *env) checkHandshake(which func() listener) func(context.Context) checkResult {
	return func(ctx context.Context) checkResult {
		l := which()
		tc, err := e.cfg.ListenerClientTLS()
		if err != nil {
			return fail("see the message", "%v", err)
		}
		var d net.Dialer
		if tc == nil {
			conn, err := d.DialContext(ctx, "tcp", l.addr)
			if err != nil {
				return notListening(l, err)
			}
			_ = conn.Close()
			return warn("set tls.source to local-ca, acme or files", "%s (%s) answers over plain HTTP (tls.source off)", l.addr, l.key)
		}
		conn, err := (&tls.Dialer{NetDialer: &d, Config: tc}).DialContext(ctx, "tcp", l.addr)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				return notListening(l, err)
			}
			return handshakeFailed(l, tc.ServerName, err)
		}
		defer conn.Close()
		cs := conn.(*tls.Conn).ConnectionState()
		leaf := cs.PeerCertificates[0]
		issuer := leaf.Issuer.CommonName
		if len(cs.VerifiedChains) > 0 {
			chain := cs.VerifiedChains[0]
			issuer = chain[len(chain)-1].Subject.CommonName
		}
		detail := fmt.Sprintf("%s (%s) as %q: %s, ALPN %s, certificate for %s from %q, expires %s",
			l.addr, l.key, tc.ServerName, tls.VersionName(cs.Version), wording.OrDash(cs.NegotiatedProtocol),
			strings.Join(certNames(leaf), ", "), issuer, leaf.NotAfter.UTC().Format("2006-01-02 15:04 MST"))
		if cs.NegotiatedProtocol != "http/1.1" {
			return fail("upgrade the appliance: every listener must announce http/1.1 in ALPN", "%s", detail)
		}
		if left := leaf.NotAfter.Sub(e.now); left < e.cfg.LeafExpiryWarning() {
			fix := "install a renewed certificate and run `systemctl reload duo-confidential`"
			if e.cfg.TLS.Source != apptls.SourceFiles {
				fix = "renewal is failing: see the admin UI's TLS page and `journalctl -u duo-confidential`"
			}
			return warn(fix, "%s (in %s)", detail, roundDays(left))
		}
		return pass("%s", detail)
	}
}

func notListening(l listener, err error) checkResult {
	return fail("start it (`systemctl start duo-confidential`) and read `journalctl -u duo-confidential`; or correct "+l.key,
		"nothing answers on %s (%s): %v", l.addr, l.key, unwrapOp(err))
}

// handshakeFailed explains a failed handshake in GitLab's terms: an
// untrusted issuer or a name the certificate does not cover.
func handshakeFailed(l listener, name string, err error) checkResult {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fail("GitLab must trust the issuer: for the local CA add `duo-confidential tls ca-cert` to GitLab's trust store; for another CA add its root to outbound.ca_bundle so this machine can check it (docs/operations.md \"TLS\")",
			"%s (%s): the certificate's issuer is not trusted: %v", l.addr, l.key, err)
	case errors.As(err, &host):
		return fail("add "+name+" to tls.names (local CA, ACME) or install a certificate that covers it (files)",
			"%s (%s): the certificate does not cover %q: %v", l.addr, l.key, name, err)
	}
	return fail("read `journalctl -u duo-confidential` and the admin UI's TLS page", "%s (%s): TLS handshake as %q failed: %v", l.addr, l.key, name, err)
}

// unwrapOp drops net.OpError's address prefix, which the detail already names.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// firstCertificate reads the leaf of a PEM chain file.
func firstCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, fmt.Errorf("%s holds no CERTIFICATE block", path)
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// checkGitLabKeys fetches GitLab's keys once, the way the gateway does
// (jwks: OIDC discovery → jwks_uri), through the outbound client so that
// outbound.ca_bundle and HTTPS_PROXY apply.
func (e *env) checkGitLabKeys(ctx context.Context) checkResult {
	gl := e.cfg.Gateway.GitLabURL
	client, err := e.cfg.OutboundClient()
	if err != nil {
		return fail("fix outbound.ca_bundle", "%v", err)
	}
	attempted := make(chan struct{}, 1)
	set, err := jwks.New(jwks.Options{IssuerURL: gl, HTTPClient: client, OnChange: func(jwks.Status) {
		select {
		case attempted <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		return fail("set gateway.gitlab_url to GitLab's external_url (https)", "%v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = set.Run(rctx); close(done) }()
	select {
	case <-attempted:
	case <-ctx.Done():
	}
	cancel()
	<-done
	st := set.Status()
	if !st.Ready {
		why := st.LastError
		if why == "" {
			why = "no answer in time"
		}
		return fail("check gateway.gitlab_url (exactly gitlab.rb's external_url), DNS, the firewall, outbound.ca_bundle for a private CA, HTTPS_PROXY/NO_PROXY",
			"cannot fetch GitLab's keys from %s: %s", gl, why)
	}
	rsa := 0
	for _, k := range set.Keys() {
		if k.Kty == "RSA" {
			rsa++
		}
	}
	if rsa == 0 {
		return fail("GitLab signs Duo tokens with RS256: check that gateway.gitlab_url is your GitLab instance", "%s lists %d keys, none of them RSA", st.JWKSURI, st.KeyCount)
	}
	return pass("%s: %d %s (%d RSA) from %s", gl, st.KeyCount, wording.Plural(st.KeyCount, "key", "keys"), rsa, st.JWKSURI)
}
