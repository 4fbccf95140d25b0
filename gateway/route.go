package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/duo-confidential/duo-confidential/internal/jsonlimit"
	"github.com/valyala/fasthttp"
)

// route is one gateway endpoint.
type route struct {
	name    string // for logs and metrics
	path    string // exact path, or a prefix when prefix is set
	prefix  bool
	methods []string
	public  bool // no authentication (health, JWKS)
	// scopes: the token must hold at least one (empty: any valid token).
	scopes []string
	// selfIssued allows the gateway's own direct-access tokens (GitLab
	// refuses them everywhere but the completion routes).
	selfIssued bool
	// forbidden is the 403 text when no scope matches; "" means
	// "Unauthorized to access '<first scope>'".
	forbidden string
	handle    func(c *call) error
}

func (rt *route) allows(m []byte) bool {
	for _, x := range rt.methods {
		if string(m) == x {
			return true
		}
	}
	return false
}

// authorize applies the route's issuer and scope rules to validated claims.
func (rt *route) authorize(c *auth.Claims) error {
	msg := rt.forbidden
	switch {
	case msg != "":
	case len(rt.scopes) > 0:
		msg = "Unauthorized to access '" + rt.scopes[0] + "'"
	default:
		msg = "Unauthorized to access '" + rt.name + "'"
	}
	if c.SelfIssued && !rt.selfIssued {
		return auth.Forbidden(msg)
	}
	if len(rt.scopes) == 0 {
		return nil
	}
	for _, s := range rt.scopes {
		if c.HasScope(s) {
			return nil
		}
	}
	return auth.Forbidden(msg)
}

// Unit primitives (token scopes) the routes require.
const (
	scopeCompleteCode  = "complete_code"
	scopeGenerateCode  = "generate_code"
	scopeDuoChat       = "duo_chat"
	scopeClassicChat   = "duo_classic_chat"
	scopeDocsSearch    = "documentation_search"
	scopeProviderProxy = "ai_gateway_model_provider_proxy"
)

// routeTable lists every route. Prefix routes are matched longest first.
func (s *Server) routeTable() map[string]*route {
	post := []string{fasthttp.MethodPost}
	get := []string{fasthttp.MethodGet, fasthttp.MethodHead}
	rs := []*route{
		{name: "healthz", path: "/monitoring/healthz", methods: get, public: true, handle: s.handleHealthz},
		{name: "ready", path: "/monitoring/ready", methods: get, public: true, handle: s.handleReady},
		{name: "jwks", path: "/.well-known/jwks.json", methods: get, public: true, handle: s.handleJWKS},
		{name: "user_access_token", path: "/v1/code/user_access_token", methods: post,
			scopes: []string{scopeCompleteCode, scopeProviderProxy}, forbidden: auth.MsgUserAccessTokenForbidden,
			handle: s.handleUserAccessToken},
		{name: "code_completions", path: "/v2/code/completions", methods: post, selfIssued: true,
			scopes: []string{scopeCompleteCode}, forbidden: "Unauthorized to access code completions", handle: s.handleCompletions},
		{name: "code_completions", path: "/v2/completions", methods: post, selfIssued: true,
			scopes: []string{scopeCompleteCode}, forbidden: "Unauthorized to access code completions", handle: s.handleCompletions},
		{name: "code_generations_v2", path: "/v2/code/generations", methods: post,
			scopes: []string{scopeGenerateCode}, forbidden: "Unauthorized to access code generations", handle: s.handleGenerationsV2},
		{name: "code_suggestions_v3", path: "/v3/code/completions", methods: post,
			scopes: []string{scopeGenerateCode, scopeCompleteCode}, handle: s.handleSuggestionsV3},
		{name: "code_suggestions_v4", path: "/v4/code/suggestions", methods: post,
			scopes: []string{scopeGenerateCode, scopeCompleteCode}, handle: s.handleSuggestionsV4},
		{name: "chat_agent", path: "/v2/chat/agent", methods: post,
			scopes: []string{scopeClassicChat, scopeDuoChat}, forbidden: "Unauthorized to access duo chat", handle: s.handleChatAgent},
		{name: "docs_search", path: "/v1/search/gitlab-docs", methods: post,
			scopes: []string{scopeDocsSearch}, forbidden: "Unauthorized to search documentations", handle: s.handleDocsSearch},
		// Scopes of prompt routes depend on the prompt; handlers check them.
		{name: "prompts", path: "/v1/prompts/", prefix: true, methods: post, handle: s.handlePrompt},
		{name: "prompts_v2", path: "/v2/prompts/", prefix: true, methods: post, handle: s.handlePromptV2},
		{name: "chat_legacy", path: "/v1/chat/", prefix: true, methods: post, handle: s.handleLegacyChat},
	}
	m := make(map[string]*route, len(rs))
	for _, rt := range rs {
		m[rt.path] = rt
	}
	return m
}

// lookupPrefix finds the prefix route for path, if any.
func (s *Server) lookupPrefix(path string) *route {
	var best *route
	for _, rt := range s.routes {
		if rt.prefix && strings.HasPrefix(path, rt.path) && len(path) > len(rt.path) &&
			(best == nil || len(rt.path) > len(best.path)) {
			best = rt
		}
	}
	return best
}

// call is one request being served.
type call struct {
	ctx     *fasthttp.RequestCtx
	s       *Server
	route   *route
	claims  *auth.Claims
	started time.Time
	// suffix is the part of the path after a prefix route (the prompt id).
	suffix string
	// streamed: the answer is a stream, observed when it ends.
	streamed bool
	// client is done when GitLab closes this request's connection;
	// started on first use, stopped when the answer is complete.
	client     context.Context
	stopClient func()
}

// clientContext returns a context cancelled when GitLab goes away (an IDE
// cancels completions constantly), so model calls stop with it.
func (c *call) clientContext() context.Context {
	if c.client == nil {
		c.client, c.stopClient = fastserve.WatchClient(c.ctx, context.Background())
	}
	return c.client
}

// takeClientStop hands the end of the client watch to a stream writer,
// which runs after the handler has returned.
func (c *call) takeClientStop() func() {
	stop := c.stopClient
	c.stopClient = nil
	if stop == nil {
		return func() {}
	}
	return stop
}

// header returns a request header as a string ("" when absent).
func (c *call) header(name string) string {
	return string(c.ctx.Request.Header.Peek(name))
}

// requestID is GitLab's correlation id, for logs.
func (c *call) requestID() string {
	id := c.header("X-Request-Id")
	if len(id) > 128 {
		id = id[:128]
	}
	return id
}

// decode unmarshals the JSON body into v. An empty body decodes as {}.
// Malformed JSON or wrong types are GitLab's 422 with what was wrong (never
// the body's content).
func (c *call) decode(v any) error {
	body := bytes.TrimSpace(c.ctx.PostBody())
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := jsonlimit.Check(body, jsonlimit.Default); err != nil {
		status := fasthttp.StatusRequestEntityTooLarge
		if le, ok := err.(*jsonlimit.Error); ok && le.TooDeep() {
			status = fasthttp.StatusUnprocessableEntity
		}
		return errorf(status, detailValidation+": "+err.Error(), err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(fasthttp.StatusUnprocessableEntity, validationDetail(err), err)
	}
	return nil
}

// validationDetail describes a JSON decoding error without quoting input.
func validationDetail(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "the body"
		}
		// Value is "number 1.5" for numbers: keep the kind, never the input.
		got, _, _ := strings.Cut(te.Value, " ")
		return fmt.Sprintf("%s: %s must be %s, not %s", detailValidation, field, jsonKind(te.Type), got)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: the body is not valid JSON (offset %d)", detailValidation, se.Offset)
	}
	return detailValidation + ": the body must be a JSON object"
}

// jsonKind names the JSON kind a Go type decodes from, as a client would
// write it ("an object", "a string").
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	default:
		return "a " + t.String()
	}
}

// invalid is a 422 for a request that decoded but misses what the route
// needs.
func invalid(format string, args ...any) *Error {
	return errorf(fasthttp.StatusUnprocessableEntity, detailValidation+": "+fmt.Sprintf(format, args...), nil)
}

// modelContext returns the context of one model call: bounded by d, by
// server shutdown and by the client's connection (fasthttp has no
// per-request context; see clientContext).
//
// The shutdown channel is taken from c.ctx here, once: the returned cancel
// runs in stream writers after the handler has returned, when fasthttp
// may already be resetting c.ctx (a context.AfterFunc on c.ctx itself
// would read it then: a data race once the client has gone).
func (c *call) modelContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeoutCause(c.clientContext(), d, errDeadline)
	ctx = model.WithCall(ctx, c.modelCall())
	// Watch only the end of the server's drain, not c.ctx itself: context's
	// watcher reads the parent's Value on cancel, and fasthttp resets the
	// RequestCtx (a data race) once the request is done. Not fasthttp's
	// shutdown channel either: that closes when the drain starts, and a
	// draining replica finishes what it has begun.
	stop := context.AfterFunc(shutdownContext{c.s.drainOver}, cancel)
	return ctx, func() { stop(); cancel() }
}

// modelCall says, for the receipt of each model call, which feature and
// which GitLab instance and user it serves.
func (c *call) modelCall() model.Call {
	route, prompt := c.labels(c.route)
	if prompt != "" {
		route += "/" + prompt
	}
	mc := model.Call{Feature: route}
	if c.claims != nil {
		mc.Instance, mc.User = c.claims.InstanceID, c.claims.GlobalUserID
	}
	return mc
}

// shutdownContext is a context done when the server's drain is over, with
// no values, safe to outlive the request it was taken from.
type shutdownContext struct{ done <-chan struct{} }

// Deadline reports none.
func (shutdownContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done is closed when the drain is over.
func (s shutdownContext) Done() <-chan struct{} { return s.done }

// Value holds nothing.
func (shutdownContext) Value(any) any { return nil }

// Err is context.Canceled after shutdown.
func (s shutdownContext) Err() error {
	select {
	case <-s.done:
		return context.Canceled
	default:
		return nil
	}
}

// errDeadline is the cause of a model call that ran out of its route's time.
var errDeadline = errors.New("the model did not answer within the route's timeout")

// writeJSON answers 200 with v as JSON.
func (c *call) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	c.ctx.SetContentType("application/json")
	c.ctx.SetBody(b)
	return nil
}

// modelError attributes a failed model call: when the call's own deadline
// ended it, the error says so (504, or 421 on prompt routes) rather than
// looking like a broken backend.
func modelError(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errDeadline) {
		return fmt.Errorf("%w: %w", errDeadline, err)
	}
	return err
}
