package ui

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
)

// connectTimeout bounds a Connect from the GitLab page; GitLab's slow
// calls (model definitions, probes) take seconds each.
const connectTimeout = 5 * time.Minute

// maxTokenLen bounds the token field: GitLab's tokens are far shorter.
const maxTokenLen = 1024

// connectView is the outcome of a Connect, shown on the GitLab page.
type connectView struct {
	Apply bool
	OK    bool
	Text  string
	Error string
	Fix   string
}

// handleConnect runs `gitlab connect` (POST, CSRF) with the token from the
// form and shows its report on the GitLab page. The token is used for this
// request only, unless "keep watching" is ticked; it is never logged or
// echoed back.
func (s *Server) handleConnect(ctx *fasthttp.RequestCtx, sess *session) {
	if !ctx.IsPost() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if !s.csrfOK(ctx, sess) {
		return
	}
	args := ctx.PostArgs()
	req := ConnectRequest{
		Token:     string(args.Peek("token")),
		Apply:     string(args.Peek("action")) == "apply",
		KeepToken: string(args.Peek("keep")) == "on",
	}
	cv := &connectView{Apply: req.Apply}
	switch {
	case s.o.Sources.GitLabConnect == nil:
		cv.Error = "the gateway is not configured (gateway.gitlab_url), so there is no GitLab to connect"
	case req.Token == "":
		cv.Error = "enter a GitLab personal access token of an administrator (scope api)"
	case len(req.Token) > maxTokenLen:
		cv.Error = "that is not a GitLab access token (too long)"
	default:
		c, cancel := context.WithTimeout(context.Background(), connectTimeout)
		text, ok, err := s.o.Sources.GitLabConnect(c, req)
		cancel()
		cv.Text, cv.OK = text, ok
		var gate *gitlabconnect.GateError
		switch {
		case errors.As(err, &gate):
			cv.Error, cv.Fix = gate.Problem, gate.Fix
		case err != nil:
			cv.Error = err.Error()
		}
		s.log.Info("admin: GitLab connect from the UI", "apply", req.Apply, "ok", ok && err == nil, "client", clientAddr(ctx).String())
	}
	v := s.newView("gitlab", sess, false)
	v.Setup = s.setupView(ctx)
	v.Connect = cv
	s.render(ctx, "gitlab", v)
}
