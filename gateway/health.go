package gateway

import (
	"github.com/duo-confidential/duo-confidential/internal/probe"
	"github.com/valyala/fasthttp"
)

// handleHealthz is GitLab's liveness probe (gitlab:duo:verify_self_hosted_setup
// passes on 200): no checks, body {} like GitLab's gateway.
func (s *Server) handleHealthz(c *call) error {
	c.ctx.SetContentType("application/json")
	c.ctx.SetBodyString("{}")
	return nil
}

// readyBody is the /monitoring/ready answer.
type readyBody struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	Notice string `json:"notice,omitempty"`
	// Warning is set while something needs attention that does not stop
	// serving (GitLab drift).
	Warning string `json:"warning,omitempty"`
}

// handleReady reports whether Duo requests can be served now and, if not,
// what is missing (GitLab keys, attestation, models): 200 or 503. GitLab
// never calls it; load balancers and operators do.
func (s *Server) handleReady(c *call) error {
	ok, reason := true, ""
	if s.o.Ready != nil {
		ok, reason = s.o.Ready()
	}
	if !ok {
		c.ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	}
	// Anyone who reaches the listener reads this: what is missing, not
	// the error details behind it.
	body := readyBody{Ready: ok, Reason: probe.PublicReason(reason), Notice: s.o.Notice}
	if s.o.Warning != nil {
		body.Warning = s.o.Warning()
	}
	return c.writeJSON(body)
}

// handleJWKS publishes the public keys of the gateway's own tokens, so other
// services (and operators) can verify direct-access tokens.
func (s *Server) handleJWKS(c *call) error {
	if s.o.LocalJWKS == nil {
		return errorf(fasthttp.StatusNotFound, detailNotFound, nil)
	}
	b, err := s.o.LocalJWKS()
	if err != nil {
		return errorf(fasthttp.StatusServiceUnavailable, "the gateway's keys are not available", err)
	}
	c.ctx.SetContentType("application/json")
	c.ctx.Response.Header.Set("Cache-Control", "public, max-age=300")
	c.ctx.SetBody(b)
	return nil
}
