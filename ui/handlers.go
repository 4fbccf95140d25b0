package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Cookie names; the __Host- prefix (browsers then insist on Secure, Path=/
// and no Domain) is used whenever the listener serves TLS.
const (
	sessionCookie = "duo_admin_session"
	loginCookie   = "duo_admin_login"
)

func (s *Server) cookieName(base string) string {
	if s.o.Secure() {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(ctx *fasthttp.RequestCtx, name, value string, maxAge int) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(s.cookieName(name))
	c.SetValue(value)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSecure(s.o.Secure())
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	if maxAge != 0 {
		c.SetMaxAge(maxAge)
	}
	ctx.Response.Header.SetCookie(c)
}

func (s *Server) currentSession(ctx *fasthttp.RequestCtx) *session {
	return s.sess.get(string(ctx.Request.Header.Cookie(s.cookieName(sessionCookie))))
}

// handleAdmin serves the pages; every one needs a session.
func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx, path string) {
	sess := s.currentSession(ctx)
	if sess == nil {
		if ctx.IsPost() {
			ctx.Error("Forbidden: sign in first", fasthttp.StatusForbidden)
			return
		}
		redirect(ctx, "/login?next="+urlQueryEscape(path))
		return
	}
	page := strings.Trim(strings.TrimPrefix(path, "/admin"), "/")
	if page == "keys/rotate" {
		s.handleRotate(ctx, sess)
		return
	}
	if page == "gitlab/connect" {
		s.handleConnect(ctx, sess)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if page == "" {
		page = "overview"
	}
	if _, ok := s.pages[page]; !ok || page == "login" {
		ctx.Error("Not Found", fasthttp.StatusNotFound)
		return
	}
	v := s.newView(page, sess, page == "traffic")
	switch page {
	case "gitlab":
		v.Setup = s.setupView(ctx)
	case "keys":
		v.Flash = string(ctx.QueryArgs().Peek("rotated"))
		v.Error = string(ctx.QueryArgs().Peek("error"))
	}
	s.render(ctx, page, v)
}

// handleRotate rotates the gateway's self-signed JWT keys (POST, CSRF).
func (s *Server) handleRotate(ctx *fasthttp.RequestCtx, sess *session) {
	if !ctx.IsPost() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if !s.csrfOK(ctx, sess) {
		return
	}
	var ks = s.o.Sources.Keys
	if ks == nil || ks() == nil {
		redirect(ctx, "/admin/keys?error="+urlQueryEscape("the gateway is not configured, so it has no keys"))
		return
	}
	k, err := ks().Rotate()
	if err != nil {
		s.log.Warn("admin: key rotation failed", "error", err)
		redirect(ctx, "/admin/keys?error="+urlQueryEscape(err.Error()))
		return
	}
	s.log.Info("admin: gateway signing key rotated", "kid", k.ID, "client", clientAddr(ctx).String())
	redirect(ctx, "/admin/keys?rotated="+urlQueryEscape(k.ID))
}

// csrfOK checks the form's CSRF token against the session's, answering
// 403 when it does not match.
func (s *Server) csrfOK(ctx *fasthttp.RequestCtx, sess *session) bool {
	if !equalSecret(sess.csrf, string(ctx.PostArgs().Peek("csrf"))) {
		ctx.Error("Forbidden: the form's CSRF token is missing or stale; reload the page and try again", fasthttp.StatusForbidden)
		return false
	}
	return true
}

func (s *Server) handleAPIStatus(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if !s.bearerOK(ctx) && s.currentSession(ctx) == nil {
		unauthorized(ctx)
		return
	}
	b, err := json.MarshalIndent(s.status(true), "", "  ")
	if err != nil {
		ctx.Error("Internal Server Error", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// handleLogin shows the sign-in form (GET) or checks it (POST).
func (s *Server) handleLogin(ctx *fasthttp.RequestCtx) {
	next := safeNext(string(ctx.QueryArgs().Peek("next")))
	if ctx.IsPost() {
		next = safeNext(string(ctx.PostArgs().Peek("next")))
	}
	if s.currentSession(ctx) != nil {
		redirect(ctx, next)
		return
	}
	switch {
	case ctx.IsGet() || ctx.IsHead():
		s.loginForm(ctx, next, "", fasthttp.StatusOK)
	case ctx.IsPost():
		s.loginPost(ctx, next)
	default:
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
	}
}

// loginForm renders the form with a fresh login-CSRF value, also set as a
// cookie (double submit), so no other site can sign a browser in.
func (s *Server) loginForm(ctx *fasthttp.RequestCtx, next, msg string, status int) {
	tok := randomToken()
	s.setCookie(ctx, loginCookie, tok, 600)
	v := &view{Page: "login", Title: "Sign in", Version: s.o.Sources.Version, Notice: s.o.Sources.Notice, CSRF: tok, Next: next, Error: msg}
	v.NoPassword = !exists(s.o.PasswordFile)
	ctx.SetStatusCode(status)
	s.render(ctx, "login", v)
}

func (s *Server) loginPost(ctx *fasthttp.RequestCtx, next string) {
	addr := clientAddr(ctx)
	// Addresses admin.allowed_networks admits, and browsers with a valid
	// session, are never locked out by failures from elsewhere.
	trusted := len(s.o.AllowedNetworks) > 0 || s.currentSession(ctx) != nil
	if wait := s.lim.retryAfter(addr, trusted); wait > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.loginForm(ctx, next, "Too many failed sign-ins. Try again in "+human(wait)+".", fasthttp.StatusTooManyRequests)
		return
	}
	if !equalSecret(string(ctx.Request.Header.Cookie(s.cookieName(loginCookie))), string(ctx.PostArgs().Peek("csrf"))) {
		s.loginForm(ctx, next, "The sign-in form expired. Please try again.", fasthttp.StatusForbidden)
		return
	}
	pw := bytes.Clone(ctx.PostArgs().Peek("password"))
	ok, err := s.checkSecret(pw)
	clear(pw)
	if !ok {
		s.lim.fail(addr)
		s.log.Warn("admin: failed sign-in", "client", addr.String())
		msg := "Wrong password or token."
		if errors.Is(err, ErrNoPassword) {
			msg = "No admin password is set yet."
		} else if err != nil {
			s.log.Error("admin: password check", "error", err)
		}
		s.loginForm(ctx, next, msg, fasthttp.StatusUnauthorized)
		return
	}
	s.lim.success(addr)
	id, _ := s.sess.create()
	s.setCookie(ctx, sessionCookie, id, 0)
	s.setCookie(ctx, loginCookie, "", -1)
	s.log.Info("admin: signed in", "client", addr.String())
	redirect(ctx, next)
}

// checkSecret accepts the admin password or an admin API token.
func (s *Server) checkSecret(secret []byte) (bool, error) {
	if len(secret) == 0 || len(secret) > 1024 {
		return false, nil
	}
	if s.tokens.Enabled() && s.tokens.Allow(append([]byte("Bearer "), secret...)) {
		return true, nil
	}
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return checkPassword(s.o.PasswordFile, secret)
}

func (s *Server) handleLogout(ctx *fasthttp.RequestCtx) {
	sess := s.currentSession(ctx)
	if !ctx.IsPost() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if sess != nil {
		if !s.csrfOK(ctx, sess) {
			return
		}
		s.sess.delete(string(ctx.Request.Header.Cookie(s.cookieName(sessionCookie))))
	}
	s.setCookie(ctx, sessionCookie, "", -1)
	redirect(ctx, "/login")
}

// safeNext keeps redirects after sign-in on our own pages.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/admin/") && !strings.ContainsAny(next, "\\\r\n") && !strings.HasPrefix(next, "//") {
		return next
	}
	return "/admin/"
}

// render executes a page template into the response.
func (s *Server) render(ctx *fasthttp.RequestCtx, page string, v *view) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("admin: render page", "page", page, "error", err)
		ctx.Error("Internal Server Error", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(buf.Bytes())
}

// newView collects what every page shows.
func (s *Server) newView(page string, sess *session, traffic bool) *view {
	st := s.status(traffic)
	return &view{
		Page: page, Title: pageTitles[page], Version: st.Version, Notice: st.Notice,
		CSRF: sess.csrf, Status: st, Now: st.GeneratedAt, SignedIn: true,
	}
}

// pageTitles are the navigation's page names.
var pageTitles = map[string]string{
	"overview":    "Overview",
	"attestation": "Attestation",
	"gitlab":      "GitLab setup",
	"keys":        "Keys",
	"tls":         "TLS",
	"traffic":     "Traffic",
	"login":       "Sign in",
}

// view is the data of one page.
type view struct {
	Page, Title, Version, Notice string
	CSRF, Next                   string
	Error, Flash                 string
	NoPassword, SignedIn         bool
	Status                       *Status
	Now                          time.Time
	Setup                        *setupView
	Connect                      *connectView
}

// redirect answers 303 with a relative Location (fasthttp's Redirect
// would make it absolute from the Host header).
func redirect(ctx *fasthttp.RequestCtx, location string) {
	ctx.Response.Header.Set("Location", location)
	ctx.SetStatusCode(fasthttp.StatusSeeOther)
}
