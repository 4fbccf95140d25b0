package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/fastserve"
	"github.com/duo-confidential/duo-confidential/internal/jsonlimit"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// maxErrorBody bounds plaintext error bodies read from upstream.
const maxErrorBody = 64 << 10

// handleInference encrypts one request, sends it, and relays the decrypted
// answer, unary or streamed.
func (s *Server) handleInference(ctx *fasthttp.RequestCtx, rt *route, path string, tm *timing) error {
	body := ctx.PostBody()
	var (
		meta        requestMeta
		contentType = "application/json"
		boundary    string
		err         error
	)
	if rt.multipart {
		meta, boundary, err = multipartMeta(string(ctx.Request.Header.ContentType()), body)
	} else {
		// Before any parser: a body of millions of tiny members costs
		// far more memory and CPU than its size suggests.
		if lerr := jsonlimit.Check(body, jsonlimit.Default); lerr != nil {
			status := fasthttp.StatusRequestEntityTooLarge
			if le, ok := lerr.(*jsonlimit.Error); ok && le.TooDeep() {
				status = fasthttp.StatusBadRequest
			}
			return newAPIError(status, errInvalidRequest, lerr.Error(), nil)
		}
		meta, err = parseMeta(body)
	}
	if err != nil {
		return newAPIError(fasthttp.StatusBadRequest, errInvalidRequest, err.Error(), nil)
	}
	if meta.Model == "" {
		return newAPIError(fasthttp.StatusBadRequest, errInvalidRequest, "the field 'model' is required", nil)
	}
	if err := s.beginReceipt(ctx, tm, meta); err != nil {
		return err
	}
	ureq := &upstreamRequest{route: rt, path: path, body: body, boundary: boundary,
		contentType: contentType, meta: meta, timing: tm}
	if rt.cacheSalt {
		if ureq.body, ureq.shardKey, err = s.cacheSalt(body, meta); err != nil {
			return err
		}
	}
	// The upstream call ends when the caller goes away (an IDE cancels
	// completions as the user types on), not when the model is done.
	uctx, cancel := fastserve.WatchClient(ctx, context.Background())
	resp, sess, sec, err := s.forward(uctx, ureq)
	if err != nil {
		cancel()
		if errors.Is(context.Cause(uctx), fastserve.ErrClientGone) {
			s.log.Debug("caller went away; upstream request cancelled", "route", rt.name)
		}
		return err
	}
	if resp.Header.Get("Privatemode-Encrypted") == "false" {
		defer cancel()
		defer resp.Body.Close()
		return s.plaintextResponse(ctx, resp)
	}
	isStream := strings.Contains(resp.Header.Get("Content-Type"), "event-stream")
	if isStream && resp.StatusCode/100 == 2 {
		s.relayStream(ctx, &streamRelay{route: rt, resp: resp, sess: sess, secretID: sec.ID, ctx: uctx, cancel: cancel, timing: tm})
		return nil
	}
	defer cancel()
	defer resp.Body.Close()
	return s.unaryResponse(ctx, rt, resp, sess, tm)
}

// cacheSalt injects the salt the backend requires and computes the shard
// key in shared-cache mode only.
func (s *Server) cacheSalt(body []byte, meta requestMeta) ([]byte, string, error) {
	salt := ""
	switch {
	case meta.CacheSalt != nil:
		salt = *meta.CacheSalt
	case s.o.CacheSaltMode == CacheSaltShared:
		salt = s.o.SharedSalt
	default:
		r, err := envelope.RandomCacheSalt()
		if err != nil {
			return nil, "", newAPIError(fasthttp.StatusInternalServerError, errInternal, "internal error", err)
		}
		salt = r
	}
	out, _, err := envelope.EnsureCacheSalt(body, salt)
	if err != nil {
		if errors.Is(err, envelope.ErrBadCacheSalt) {
			return nil, "", newAPIError(fasthttp.StatusBadRequest, errInvalidRequest, "cache_salt must be at least 32 characters", err)
		}
		return nil, "", newAPIError(fasthttp.StatusBadRequest, errInvalidRequest, "the request body is not a valid JSON object", err)
	}
	if s.o.CacheSaltMode != CacheSaltShared {
		// A per-request salt gives no routing affinity, and a client's own
		// salt must not turn into a content-derived key the relay sees.
		return out, "", nil
	}
	key, err := envelope.ShardKey(salt, out)
	if err != nil {
		return out, "", nil // affinity is an optimisation; never fail a request for it
	}
	return out, key, nil
}

// upstreamRequest is one inference request on its way upstream.
type upstreamRequest struct {
	route       *route
	path        string
	body        []byte // plaintext JSON object or multipart form
	boundary    string // multipart only
	contentType string
	meta        requestMeta
	shardKey    string // sent only in shared-cache mode
	timing      *timing
}

// forward sends the encrypted request, retrying once with a fresh secret
// when the backend has forgotten ours, and once with a fresh nonce when the
// connection was reset before any answer. It returns the secret the
// answer is encrypted under.
func (s *Server) forward(ctx context.Context, r *upstreamRequest) (*http.Response, *envelope.Session, envelope.Secret, error) {
	rt, meta, tm := r.route, r.meta, r.timing
	fail := func(e *apiError) (*http.Response, *envelope.Session, envelope.Secret, error) {
		return nil, nil, envelope.Secret{}, e
	}
	sec, err := s.o.Secrets.Current()
	if err != nil {
		return fail(newAPIError(fasthttp.StatusServiceUnavailable, errUnavailable,
			"the confidential backend is not available right now (not attested or no secret); the appliance status says why", err))
	}
	requestID := "proxy_" + uuid.Must(uuid.NewV7()).String()
	retriedSecret, retriedReset := false, false
	for attempt := 1; ; attempt++ {
		sess, err := envelope.NewSession(sec)
		if err != nil {
			return fail(newAPIError(fasthttp.StatusInternalServerError, errInternal, "internal error", err))
		}
		var enc []byte
		ct := r.contentType
		if rt.multipart {
			enc, ct, err = sess.EncryptMultipart(r.body, r.boundary, rt.reqPlain)
		} else {
			enc, err = sess.EncryptJSON(r.body, rt.reqPlain)
		}
		if err != nil {
			return fail(newAPIError(fasthttp.StatusBadRequest, errInvalidRequest, "the request body could not be encrypted: it is not a well-formed JSON object or form", err))
		}
		r.timing.rec.sent(sec, enc)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base.String()+r.path, bytes.NewReader(enc))
		if err != nil {
			return fail(newAPIError(fasthttp.StatusInternalServerError, errInternal, "internal error", err))
		}
		s.setHeaders(req, sec, requestID+"_"+strconv.Itoa(attempt))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Privatemode-Target-Model", meta.Model)
		if r.shardKey != "" {
			req.Header.Set("Privatemode-Shard-Key", r.shardKey)
		}
		if meta.Stream {
			req.Header.Set("Accept", "text/event-stream")
		} else {
			req.Header.Set("Accept", "application/json")
		}
		sent := time.Now()
		resp, err := s.client.Do(req)
		tm.wait(sent)
		if err != nil {
			if !retriedReset && errors.Is(err, syscall.ECONNRESET) {
				retriedReset = true
				continue
			}
			return fail(newAPIError(fasthttp.StatusBadGateway, errUpstream, "the confidential backend could not be reached", err))
		}
		if resp.StatusCode == http.StatusInternalServerError && resp.Header.Get("Privatemode-Encrypted") == "false" && !retriedSecret {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			resp.Body.Close()
			if bytes.Contains(b, []byte("no secret for ID")) {
				retriedSecret = true
				if sec, err = s.o.Secrets.Invalidate(ctx, sec.ID); err != nil {
					e := newAPIError(fasthttp.StatusServiceUnavailable, errUnavailable,
						"the confidential backend lost our session key and a new one could not be agreed", err)
					var ra interface{ RetryAfter() time.Duration }
					if errors.As(err, &ra) {
						e.retryAfter = strconv.Itoa(int((ra.RetryAfter() + time.Second - 1) / time.Second))
					}
					return fail(e)
				}
				continue
			}
			resp.Body = io.NopCloser(bytes.NewReader(b))
		}
		return resp, sess, sec, nil
	}
}

// setHeaders sets exactly the headers the Privatemode API needs. Nothing
// from the client's request is forwarded: no IP, cookies or user agent.
func (s *Server) setHeaders(req *http.Request, sec envelope.Secret, requestID string) {
	h := req.Header
	h.Set("Authorization", "Bearer "+s.o.APIKey)
	h.Set("Privatemode-Version", s.o.ClientVersion)
	h.Set("Privatemode-Client", "Proxy")
	if s.o.PlatformHeaders {
		h.Set("Privatemode-OS", runtime.GOOS)
		h.Set("Privatemode-Architecture", runtime.GOARCH)
	}
	h.Set("User-Agent", "duo-confidential")
	h.Set("Privatemode-User-Request-ID", requestID)
	if sec.ID != "" {
		h.Set("Privatemode-Secret-ID", sec.ID)
		policy := ocspPolicy(s.o.StrictOCSP, time.Now()).Header()
		h.Set("Privatemode-NVIDIA-OCSP-Policy", policy)
		h.Set("Privatemode-NVIDIA-OCSP-Policy-MAC", envelope.OCSPMAC(sec.Key, policy))
	}
}

// ocspRevokedGrace is how long after an NVIDIA revocation a GPU is still
// accepted in the default (non-strict) policy, as upstream does.
const ocspRevokedGrace = 48 * time.Hour

// ocspPolicy is the GPU OCSP policy for a request sent at now; the
// revocation cut-off moves with the clock, so it is computed per request.
func ocspPolicy(strict bool, now time.Time) envelope.OCSPPolicy {
	if strict {
		return envelope.OCSPPolicy{RevokedNotBefore: now}
	}
	return envelope.OCSPPolicy{AllowRevoked: true, AllowUnknown: true, RevokedNotBefore: now.Add(-ocspRevokedGrace)}
}

// plaintextResponse handles answers the backend marked unencrypted. A
// success that is not encrypted is refused: it could be anyone's words.
// Errors are re-phrased for the client, never passed through raw.
func (s *Server) plaintextResponse(ctx *fasthttp.RequestCtx, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	upstreamMsg := upstreamMessage(b)
	switch code := resp.StatusCode; {
	case code/100 == 2:
		return newAPIError(fasthttp.StatusBadGateway, errUpstream,
			"the backend answered without encryption; the answer was discarded", fmt.Errorf("HTTP %d with Privatemode-Encrypted: false", code))
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return newAPIError(fasthttp.StatusBadGateway, errUpstream,
			"the Privatemode API rejected the appliance's API key; check privatemode.api_key_file", fmt.Errorf("HTTP %d: %s", code, upstreamMsg))
	case code == http.StatusTooManyRequests:
		e := newAPIError(fasthttp.StatusTooManyRequests, errRateLimit, "the Privatemode API rate limit was reached; retry later", errors.New(upstreamMsg))
		if ra := resp.Header.Get("Retry-After"); len(ra) < 32 {
			e.retryAfter = ra
		}
		return e
	case code/100 == 4:
		msg := "the backend rejected the request"
		if upstreamMsg != "" {
			msg += ": " + upstreamMsg
		}
		return newAPIError(code, errInvalidRequest, msg, nil)
	default:
		return newAPIError(fasthttp.StatusBadGateway, errUpstream,
			fmt.Sprintf("the confidential backend failed (HTTP %d)", code), errors.New(upstreamMsg))
	}
}

// upstreamMessage extracts a short, printable error message from an
// upstream plaintext body (OpenAI error JSON or text).
func upstreamMessage(b []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	msg := string(bytes.TrimSpace(b))
	if json.Unmarshal(b, &e) == nil && len(e.Error) > 0 {
		var d struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &d) == nil && d.Message != "" {
			msg = d.Message
		} else {
			var s string
			if json.Unmarshal(e.Error, &s) == nil {
				msg = s
			}
		}
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}

// unaryResponse decrypts a whole (success or model-error) response body.
func (s *Server) unaryResponse(ctx *fasthttp.RequestCtx, rt *route, resp *http.Response, sess *envelope.Session, tm *timing) error {
	read := time.Now()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(s.o.MaxResponseBody)+1))
	tm.wait(read)
	tm.rec.received(b)
	if err != nil {
		return newAPIError(fasthttp.StatusBadGateway, errUpstream, "the backend's answer was interrupted", err)
	}
	if len(b) > s.o.MaxResponseBody {
		return newAPIError(fasthttp.StatusBadGateway, errUpstream, "the backend's answer is larger than allowed", nil)
	}
	plain, err := tm.rec.decrypt(sess, nil, b, rt.respPlain)
	if err != nil {
		return newAPIError(fasthttp.StatusBadGateway, errUpstream, "the backend's answer failed decryption and was discarded", err)
	}
	if resp.StatusCode/100 == 2 && sess.Decrypted() == 0 {
		// Only plain fields: nothing in it came from the attested backend.
		return newAPIError(fasthttp.StatusBadGateway, errUpstream,
			"the backend's answer carried no encrypted field and was discarded", nil)
	}
	ctx.SetStatusCode(resp.StatusCode)
	ctx.SetContentType("application/json")
	ctx.SetBody(plain)
	return nil
}

// handleModels relays the model list. It is plaintext upstream (not
// attested): it names models, and carries no user data.
func (s *Server) handleModels(ctx *fasthttp.RequestCtx, path string, tm *timing) error {
	upath := "/v1/models"
	if id := strings.TrimPrefix(path, "/v1/models/"); id != path {
		if id == "" {
			return newAPIError(fasthttp.StatusNotFound, errNotFound, "no model id given", nil)
		}
		upath += "/" + url.PathEscape(id)
	}
	c, cancel := context.WithTimeout(context.Background(), s.o.ReadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, s.base.String()+upath, nil)
	if err != nil {
		return newAPIError(fasthttp.StatusInternalServerError, errInternal, "internal error", err)
	}
	s.setHeaders(req, envelope.Secret{}, "proxy_"+uuid.Must(uuid.NewV7()).String())
	req.Header.Set("Accept", "application/json")
	sent := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		tm.wait(sent)
		return newAPIError(fasthttp.StatusBadGateway, errUpstream, "the Privatemode API could not be reached", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	tm.wait(sent)
	if err != nil {
		return newAPIError(fasthttp.StatusBadGateway, errUpstream, "the model list was interrupted", err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return newAPIError(fasthttp.StatusNotFound, errNotFound, "the model does not exist", nil)
	}
	if resp.StatusCode/100 != 2 {
		return s.plaintextResponse(ctx, &http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(b))})
	}
	if !json.Valid(b) {
		return newAPIError(fasthttp.StatusBadGateway, errUpstream, "the model list is not JSON", nil)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

// limitReader is io.LimitReader, named for call sites reading form values.
func limitReader(r io.Reader, n int64) io.Reader { return io.LimitReader(r, n) }
