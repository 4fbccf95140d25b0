package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// Request headers of the inference routes.
const (
	headerSecretID  = "Privatemode-Secret-ID"
	headerOCSP      = "Privatemode-NVIDIA-OCSP-Policy"
	headerOCSPMAC   = "Privatemode-NVIDIA-OCSP-Policy-MAC"
	headerEncrypted = "Privatemode-Encrypted"
)

// minCacheSalt is the server half's minimum cache_salt length.
const minCacheSalt = 32

type routeKind int

const (
	kindChat routeKind = iota
	kindCompletions
	kindEmbeddings
	kindMessages
	kindTranscriptions
)

// route describes one inference route: its plain field sets, whether it
// needs a cache_salt, and the model task it runs.
type route struct {
	kind      routeKind
	reqPlain  envelope.Fields
	respPlain envelope.Fields
	needSalt  bool
	task      string
}

var routes = map[string]*route{
	pathChat:           {kindChat, envelope.ChatRequestPlain, envelope.ChatResponsePlain, true, TaskGenerate},
	pathCompletions:    {kindCompletions, envelope.ChatRequestPlain, envelope.ChatResponsePlain, true, TaskGenerate},
	pathMessages:       {kindMessages, envelope.MessagesRequestPlain, envelope.MessagesResponsePlain, true, TaskGenerate},
	pathEmbeddings:     {kindEmbeddings, envelope.EmbeddingsRequestPlain, envelope.EmbeddingsResponsePlain, false, TaskEmbed},
	pathTranscriptions: {kindTranscriptions, envelope.TranscriptionFormPlain, envelope.TranscriptionResponsePlain, false, TaskTranscribe},
}

func routeFor(path []byte) *route { return routes[string(path)] }

// codec seals response bodies for one request: field envelopes under the
// request's session, or nothing (plaintext mode, plaintext-flag fault).
type codec interface {
	// appendSeal appends the sealed body to dst.
	appendSeal(dst, body []byte, plain envelope.Fields) ([]byte, error)
}

type plainCodec struct{}

func (plainCodec) appendSeal(dst, b []byte, _ envelope.Fields) ([]byte, error) {
	return append(dst, b...), nil
}

type sessionCodec struct{ s *envelope.ServerSession }

func (c sessionCodec) appendSeal(dst, b []byte, plain envelope.Fields) ([]byte, error) {
	return c.s.AppendEncryptJSON(dst, b, plain)
}

// call is one inference request in flight.
type call struct {
	s     *Server
	rt    *route
	fault Fault
	codec codec
	// encrypted says responses are sealed (false in plaintext mode and
	// under the plaintext-flag fault).
	encrypted bool
	id        string // response id
	created   int64
}

var callSeq atomic.Uint64

func (s *Server) handleInference(ctx *fasthttp.RequestCtx, rt *route) {
	c := &call{s: s, rt: rt, fault: s.takeFault(false), created: s.now().Unix()}
	c.id = "sandbox-" + strconv.FormatUint(callSeq.Add(1), 36)
	switch c.fault {
	case Fault429:
		ctx.Response.Header.Set("Retry-After", "1")
		protocolError(ctx, fasthttp.StatusTooManyRequests, "sandbox: injected rate limit (429)")
		return
	case FaultDelay:
		t := time.NewTimer(s.opts.FaultDelay)
		if !s.sleep(t, s.opts.FaultDelay) {
			protocolError(ctx, fasthttp.StatusServiceUnavailable, "sandbox: shutting down")
			return
		}
	}
	body := ctx.PostBody()
	var plain []byte
	var form *transcriptionForm
	if s.opts.Plaintext {
		c.codec = plainCodec{}
		if rt.kind == kindTranscriptions {
			f, err := parsePlainForm(ctx)
			if err != nil {
				protocolError(ctx, fasthttp.StatusBadRequest, err.Error())
				return
			}
			form = f
		} else {
			plain = body
		}
	} else {
		sess, ok := s.openSession(ctx, c)
		if !ok {
			return
		}
		c.codec, c.encrypted = sessionCodec{sess}, true
		var err error
		if rt.kind == kindTranscriptions {
			form, err = decryptForm(ctx, sess)
		} else {
			plain, err = sess.DecryptJSON(body, rt.reqPlain)
		}
		if err != nil {
			decryptFailed(ctx, string(ctx.Request.Header.Peek(headerSecretID)), err)
			return
		}
	}
	if c.fault == FaultPlaintextFlag {
		c.codec, c.encrypted = plainCodec{}, false
	}
	if form != nil {
		c.transcribe(ctx, form)
		return
	}
	c.dispatch(ctx, plain)
}

// openSession applies the secret-ID, fault and OCSP checks of the real
// server half and returns the request's ServerSession.
func (s *Server) openSession(ctx *fasthttp.RequestCtx, c *call) (*envelope.ServerSession, bool) {
	id := string(ctx.Request.Header.Peek(headerSecretID))
	if id == "" {
		protocolError(ctx, fasthttp.StatusBadRequest, "missing "+headerSecretID+" header")
		return nil, false
	}
	switch c.fault {
	case FaultExpiredSecret:
		s.forget(id)
	case FaultNoSecret:
		noSecret(ctx, id)
		return nil, false
	}
	sec, ok := s.lookup(id)
	if !ok {
		noSecret(ctx, id)
		return nil, false
	}
	if !checkOCSP(ctx, sec.Key) {
		return nil, false
	}
	// Every envelope must carry the header's ID: the session resolves no
	// other secret.
	return envelope.NewServerSession(func(eid string) (envelope.Secret, bool) {
		if eid != id {
			return envelope.Secret{}, false
		}
		return sec, true
	}), true
}

// noSecret answers as the inference-proxy does for an unknown ID; clients
// match this text to re-exchange.
func noSecret(ctx *fasthttp.RequestCtx, id string) {
	protocolError(ctx, fasthttp.StatusInternalServerError, (&envelope.UnknownSecretError{ID: id}).Error())
}

// checkOCSP enforces the NVIDIA OCSP policy header: absent (both headers)
// means GOOD only, which the sandbox's imaginary GPUs are; present, its MAC
// must verify under the secret. Failures are plaintext 500s, as upstream.
func checkOCSP(ctx *fasthttp.RequestCtx, key [32]byte) bool {
	policy := ctx.Request.Header.Peek(headerOCSP)
	mac := ctx.Request.Header.Peek(headerOCSPMAC)
	if len(policy) == 0 && len(mac) == 0 {
		return true
	}
	if len(policy) == 0 || !envelope.VerifyOCSPMAC(key, string(policy), string(bytes.ToLower(mac))) {
		protocolError(ctx, fasthttp.StatusInternalServerError, "OCSP policy: MAC does not verify")
		return false
	}
	if !bytes.Contains(policy, []byte("allow-good")) {
		protocolError(ctx, fasthttp.StatusInternalServerError, "OCSP policy: GPU status GOOD not allowed by policy")
		return false
	}
	return true
}

// decryptFailed maps a request decryption error to the server half's
// plaintext answers.
func decryptFailed(ctx *fasthttp.RequestCtx, headerID string, err error) {
	if u, ok := errors.AsType[*envelope.UnknownSecretError](err); ok && u.ID == headerID {
		noSecret(ctx, u.ID) // the secret vanished between lookup and decryption
		return
	}
	if errors.Is(err, envelope.ErrUnknownSecret) || errors.Is(err, envelope.ErrForeignEnvelope) {
		protocolError(ctx, fasthttp.StatusBadRequest, "decrypt request: every field must use the "+headerSecretID+" secret: "+err.Error())
		return
	}
	protocolError(ctx, fasthttp.StatusBadRequest, "decrypt request: "+err.Error())
}

// dispatch validates a plaintext generation or embedding request and runs
// the model.
func (c *call) dispatch(ctx *fasthttp.RequestCtx, plain []byte) {
	if c.rt.kind == kindEmbeddings {
		c.embed(ctx, plain)
		return
	}
	var g genRequest
	if err := json.Unmarshal(plain, &g); err != nil {
		protocolError(ctx, fasthttp.StatusBadRequest, "invalid request JSON: "+err.Error())
		return
	}
	if c.rt.needSalt && !c.s.opts.Plaintext {
		if g.CacheSalt == nil {
			protocolError(ctx, fasthttp.StatusBadRequest, "missing field 'cache_salt'")
			return
		}
		if len(*g.CacheSalt) < minCacheSalt {
			protocolError(ctx, fasthttp.StatusBadRequest, "cache_salt must be at least 32 characters")
			return
		}
	}
	if msg := validateMedia(g.Messages); msg != "" {
		protocolError(ctx, fasthttp.StatusBadRequest, msg)
		return
	}
	if !c.checkModel(ctx, g.Model) {
		return
	}
	var r *reply
	if c.rt.kind == kindCompletions {
		r = completionReply(&g)
	} else {
		r = chatReply(&g)
	}
	if g.Stream {
		c.stream(ctx, &g, r)
		return
	}
	c.send(ctx, fasthttp.StatusOK, c.rt.respPlain, unaryBody(c, &g, r))
}

// checkModel answers a model error (encrypted, as vLLM's errors are) when
// the model is unknown or cannot do the route's task.
func (c *call) checkModel(ctx *fasthttp.RequestCtx, model string) bool {
	known, ok := modelTask(model, c.rt.task)
	switch {
	case !known:
		c.modelError(ctx, fasthttp.StatusNotFound, "NotFoundError", "The model `"+model+"` does not exist.")
	case !ok:
		c.modelError(ctx, fasthttp.StatusBadRequest, "BadRequestError", "The model `"+model+"` does not support task "+c.rt.task+".")
	case c.fault == Fault500:
		c.modelError(ctx, fasthttp.StatusInternalServerError, "InternalServerError", "sandbox: injected model error (500)")
	default:
		return true
	}
	return false
}

// modelError answers an error "from the model": sealed like any response.
func (c *call) modelError(ctx *fasthttp.RequestCtx, status int, typ, msg string) {
	b := make([]byte, 0, len(msg)+96)
	b = append(b, `{"error":{"message":`...)
	b = appendString(b, msg)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"param":null,"code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, "}}"...)
	c.send(ctx, status, c.rt.respPlain, b)
}

// validateMedia is the server half's MediaContentValidator: image URLs
// must be https or data URLs; audio and video URLs are refused.
func validateMedia(msgs []message) string {
	for _, m := range msgs {
		if len(m.Content) == 0 || m.Content[0] != '[' {
			continue
		}
		var parts []part
		if json.Unmarshal(m.Content, &parts) != nil {
			continue
		}
		for _, p := range parts {
			switch p.Type {
			case "audio_url", "video_url", "input_audio":
				return "content type " + p.Type + " is not allowed"
			case "image_url":
				if p.ImageURL == nil || !(strings.HasPrefix(p.ImageURL.URL, "https://") || strings.HasPrefix(p.ImageURL.URL, "data:")) {
					return "image_url must be an https or data URL"
				}
			}
		}
	}
	return ""
}

// send seals body and answers it with status, applying the
// response-shaping faults (reset, truncate).
func (c *call) send(ctx *fasthttp.RequestCtx, status int, plain envelope.Fields, body []byte) {
	if c.fault == FaultResetMidstream {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(resetConn)
		return
	}
	out, err := c.codec.appendSeal(nil, body, plain)
	if err != nil {
		c.s.log.Error("encrypt response", "err", err)
		protocolError(ctx, fasthttp.StatusInternalServerError, "encrypt response: "+err.Error())
		return
	}
	if !c.encrypted {
		ctx.Response.Header.Set(headerEncrypted, "false")
	}
	if c.fault == FaultTruncate {
		out = out[:len(out)/2]
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// resetConn aborts a connection with a TCP RST (SO_LINGER 0), so the peer
// sees "connection reset by peer" rather than a clean close.
func resetConn(conn net.Conn) {
	raw := conn
	if u, ok := raw.(interface{ UnsafeConn() net.Conn }); ok { // fasthttp's hijack wrapper
		raw = u.UnsafeConn()
	}
	if u, ok := raw.(interface{ NetConn() net.Conn }); ok { // fastserve's connection
		raw = u.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
