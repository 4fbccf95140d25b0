package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/probe"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/valyala/fasthttp"
)

// route describes one encrypted inference route: which top-level fields
// stay plaintext each way, and how the body is shaped.
type route struct {
	name      string
	reqPlain  envelope.Fields
	respPlain envelope.Fields
	cacheSalt bool // the backend requires cache_salt on this route
	anthropic bool // Anthropic Messages stream framing (event: lines, message_stop)
	multipart bool
}

// routes lists every encrypted route; anything else is answered here.
var routes = map[string]*route{
	"/v1/chat/completions":     {name: "chat", reqPlain: envelope.ChatRequestPlain, respPlain: envelope.ChatResponsePlain, cacheSalt: true},
	"/v1/completions":          {name: "completions", reqPlain: envelope.ChatRequestPlain, respPlain: envelope.ChatResponsePlain, cacheSalt: true},
	"/v1/messages":             {name: "messages", reqPlain: envelope.MessagesRequestPlain, respPlain: envelope.MessagesResponsePlain, cacheSalt: true, anthropic: true},
	"/v1/embeddings":           {name: "embeddings", reqPlain: envelope.EmbeddingsRequestPlain, respPlain: envelope.EmbeddingsResponsePlain},
	"/v1/audio/transcriptions": {name: "transcriptions", reqPlain: envelope.TranscriptionFormPlain, respPlain: envelope.TranscriptionResponsePlain, multipart: true},
}

// Handle is the fasthttp handler for the whole /v1 surface.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	path := string(ctx.Path())
	tm := &timing{start: time.Now(), route: routeLabel(path)}
	defer s.observe(ctx, tm)
	defer s.finishReceipt(ctx, tm)
	switch path {
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
		return
	case "/readyz":
		s.readyz(ctx)
		return
	}
	if s.o.Tokens.Enabled() && !s.o.Tokens.Allow(ctx.Request.Header.Peek("Authorization")) {
		e := newAPIError(fasthttp.StatusUnauthorized, errInvalidRequest,
			"missing or incorrect bearer token: send the token configured for this appliance as 'Authorization: Bearer <token>'", nil)
		e.code = "invalid_api_key"
		writeError(ctx, e)
		return
	}
	var err error
	switch rt, ok := routes[path]; {
	case ok:
		if !ctx.IsPost() {
			err = methodNotAllowed(ctx, "POST")
			break
		}
		err = s.handleInference(ctx, rt, path, tm)
	case path == "/v1/models" || strings.HasPrefix(path, "/v1/models/"):
		if !ctx.IsGet() {
			err = methodNotAllowed(ctx, "GET")
			break
		}
		err = s.handleModels(ctx, path, tm)
	default:
		err = newAPIError(fasthttp.StatusNotFound, errNotFound,
			fmt.Sprintf("unknown request URL: %s %s", knownMethod(ctx.Method()), clipPath(path)), nil)
	}
	if err != nil {
		var e *apiError
		if !errors.As(err, &e) {
			e = newAPIError(fasthttp.StatusInternalServerError, errInternal, "internal error", err)
		}
		if e.status >= 500 {
			s.log.Warn("request failed", "route", routeLabel(path), "status", e.status, "error", e.Error())
		} else {
			s.log.Debug("request refused", "route", routeLabel(path), "status", e.status, "error", e.Error())
		}
		writeError(ctx, e)
	}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) error {
	ctx.Response.Header.Set("Allow", allow)
	return newAPIError(fasthttp.StatusMethodNotAllowed, errInvalidRequest,
		fmt.Sprintf("method %s not allowed; use %s", knownMethod(ctx.Method()), allow), nil)
}

// knownMethod names a standard method and nothing else: answers and logs
// never echo request bytes a client chose freely.
func knownMethod(m []byte) string {
	switch s := string(m); s {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return s
	default:
		return "(non-standard)"
	}
}

// clipPath bounds a request path quoted in an answer.
func clipPath(p string) string {
	if len(p) > 64 {
		return p[:64] + "…"
	}
	return p
}

// requestMeta is what the proxy itself needs to read from a request body.
type requestMeta struct {
	Model     string
	Stream    bool
	CacheSalt *string
}

// parseMeta reads model, stream and cache_salt from a JSON object body,
// validating the body with the same scanner encryption uses.
func parseMeta(body []byte) (requestMeta, error) {
	var m requestMeta
	raw, err := envelope.RawMember(body, "model", "stream", "cache_salt", "")
	if err != nil {
		if errors.Is(err, envelope.ErrNotObject) {
			return m, errors.New("the request body must be a JSON object")
		}
		if errors.Is(err, envelope.ErrDuplicateKey) {
			return m, errors.New("the request body has a duplicated key")
		}
		return m, errors.New("the request body is not valid JSON")
	}
	if raw[3] != nil {
		// The real Privatemode server answers 500 to it.
		return m, errors.New("the request body has an empty key")
	}
	if raw[0] != nil && json.Unmarshal(raw[0], &m.Model) != nil {
		return m, errors.New("the field 'model' must be a string")
	}
	if raw[1] != nil && string(raw[1]) != "null" && json.Unmarshal(raw[1], &m.Stream) != nil {
		return m, errors.New("the field 'stream' must be true or false")
	}
	if raw[2] != nil {
		var salt string
		if json.Unmarshal(raw[2], &salt) != nil {
			return m, errors.New("the field 'cache_salt' must be a string")
		}
		m.CacheSalt = &salt
	}
	return m, nil
}

// maxFormParts bounds the parts read from one form, as the envelope does.
const maxFormParts = 1000

// multipartMeta reads the model and stream form fields of a transcription
// request and returns its boundary. Plain-listed fields go upstream
// unencrypted, so one given as a file or more than once is refused.
func multipartMeta(contentType string, body []byte) (requestMeta, string, error) {
	var m requestMeta
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return m, "", errors.New("the request must be multipart/form-data with a boundary")
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	seen := map[string]bool{}
	for range maxFormParts {
		p, err := r.NextPart()
		if err != nil {
			break
		}
		name := p.FormName()
		plain := envelope.TranscriptionFormPlain.Has(name)
		switch {
		case plain && p.FileName() != "":
			_ = p.Close()
			return m, "", fmt.Errorf("the form field '%s' must be a plain value, not a file", name)
		case plain && seen[name]:
			_ = p.Close()
			return m, "", fmt.Errorf("the form field '%s' is given more than once", name)
		}
		seen[name] = plain
		if plain {
			var v bytes.Buffer
			_, _ = v.ReadFrom(limitReader(p, 4096))
			switch name {
			case "model":
				m.Model = v.String()
			case "stream":
				m.Stream = v.String() == "true"
			}
		}
		_ = p.Close()
	}
	if m.Model == "" {
		return m, "", errors.New("the form field 'model' is required")
	}
	return m, params["boundary"], nil
}

// readyz answers 200 when requests can be served now and 503 with the
// reason otherwise. The reason names what is missing (attestation, secret),
// for operators and load balancers; details (upstream bodies, secret IDs)
// stay in the log and the admin UI.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	ready, reason := true, ""
	if s.o.Ready != nil {
		ready, reason = s.o.Ready()
	} else if _, err := s.o.Secrets.Current(); err != nil {
		ready, reason = false, err.Error()
	}
	if s.closing.Load() {
		ready, reason = false, "shutting down"
	}
	b, _ := json.Marshal(struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason,omitempty"`
		Notice string `json:"notice,omitempty"`
	}{ready, probe.PublicReason(reason), s.o.Notice})
	if !ready {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
