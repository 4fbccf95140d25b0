package sandbox

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// storedSecret is one exchanged secret and when its lease ends.
type storedSecret struct {
	secret  envelope.Secret
	expires time.Time
}

// attestRequest and attestResponse are the /privatemode/v1/attest wire
// types ([]byte fields travel as std base64, as Go encodes them).
type attestRequest struct {
	Nonce []byte
}

type attestResponse struct {
	AttestationDoc []byte
}

// maxNonce bounds the attestation nonce (the client sends 32 bytes).
const maxNonce = 64

// sweepEvery is how many exchanges pass between sweeps of expired secrets,
// which bounds the store to the secrets of one TTL plus sweepEvery.
const sweepEvery = 64

func (s *Server) handleAttest(ctx *fasthttp.RequestCtx) {
	if !s.requireKey(ctx) {
		return
	}
	var req attestRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil || len(req.Nonce) == 0 || len(req.Nonce) > maxNonce {
		protocolError(ctx, fasthttp.StatusBadRequest, "attest: body must be {\"Nonce\":\"<base64, 1–64 bytes>\"}")
		return
	}
	bad := s.takeFault(true) == FaultBadMeasurement
	var doc []byte
	var err error
	if s.opts.Platform == PlatformSNP {
		var mutate func(*attesttest.SNPReportOptions)
		if bad {
			mutate = func(o *attesttest.SNPReportOptions) { o.Measurement[0] ^= 0xff }
		}
		doc, err = s.backend.SNPDoc(req.Nonce, nil, mutate)
	} else {
		var mutate func(*attesttest.TDXQuoteOptions)
		if bad {
			mutate = func(o *attesttest.TDXQuoteOptions) { o.MrTd[0] ^= 0xff }
		}
		doc, err = s.backend.TDXDoc(req.Nonce, nil, mutate)
	}
	if err != nil {
		s.log.Error("attest: evidence", "err", err)
		protocolError(ctx, fasthttp.StatusInternalServerError, "attest: cannot produce evidence")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, attestResponse{AttestationDoc: doc})
}

// exchangeRequest is the /privatemode/v1/secret request.
type exchangeRequest struct {
	PublicKey []byte
}

func (s *Server) handleSecret(ctx *fasthttp.RequestCtx) {
	if !s.requireKey(ctx) {
		return
	}
	var req exchangeRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil || len(req.PublicKey) == 0 {
		protocolError(ctx, fasthttp.StatusBadRequest, "secret: body must be {\"PublicKey\":\"<base64>\"}")
		return
	}
	resp, sec, err := s.exchange.respond(req.PublicKey)
	if err != nil {
		protocolError(ctx, fasthttp.StatusBadRequest, "secret: exchange failed: "+err.Error())
		return
	}
	now := s.now()
	// Put-if-absent, as the secret service's etcd lease: a replayed public
	// key does not extend or replace an existing lease.
	if _, loaded := s.secrets.LoadOrStore(sec.ID, &storedSecret{secret: sec, expires: now.Add(s.opts.SecretTTL)}); loaded {
		protocolError(ctx, fasthttp.StatusConflict, "secret: ID already exchanged")
		return
	}
	if s.exchanges.Add(1)%sweepEvery == 0 {
		s.sweep(now)
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

// lookup returns the secret for id if it is known and its lease holds.
func (s *Server) lookup(id string) (envelope.Secret, bool) {
	if s.fixed != nil && id == s.fixed.ID {
		return *s.fixed, true
	}
	v, ok := s.secrets.Load(id)
	if !ok {
		return envelope.Secret{}, false
	}
	st := v.(*storedSecret)
	if !s.now().Before(st.expires) {
		s.secrets.CompareAndDelete(id, v)
		return envelope.Secret{}, false
	}
	return st.secret, true
}

// forget drops the secret for id (the expired-secret fault).
func (s *Server) forget(id string) { s.secrets.Delete(id) }

// sweep drops expired secrets.
func (s *Server) sweep(now time.Time) {
	s.secrets.Range(func(k, v any) bool {
		if !now.Before(v.(*storedSecret).expires) {
			s.secrets.CompareAndDelete(k, v)
		}
		return true
	})
}

// Secrets returns how many exchanged secrets are stored (expired ones until
// the next sweep included).
func (s *Server) Secrets() int {
	n := 0
	s.secrets.Range(func(any, any) bool { n++; return true })
	return n
}

// requireKey enforces a non-empty bearer API key, as the gateway does, and
// records it. It answers 401 and returns false without one.
func (s *Server) requireKey(ctx *fasthttp.RequestCtx) bool {
	auth := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || string(auth[:len(prefix)]) != prefix {
		protocolError(ctx, fasthttp.StatusUnauthorized, "missing API key (Authorization: Bearer <key>)")
		return false
	}
	s.keys.add(string(auth[len(prefix):]))
	return true
}

// keyLog keeps the distinct API keys seen, bounded.
type keyLog struct {
	mu   sync.Mutex
	keys []string
}

const maxKeys = 64

func (k *keyLog) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, have := range k.keys {
		if have == key {
			return
		}
	}
	if len(k.keys) == maxKeys {
		copy(k.keys, k.keys[1:])
		k.keys = k.keys[:maxKeys-1]
	}
	k.keys = append(k.keys, key)
}

// APIKeys returns the distinct bearer keys /attest and /secret received, in
// first-seen order (at most the last 64).
func (s *Server) APIKeys() []string {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	return append([]string(nil), s.keys.keys...)
}

// writeJSON answers v as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		protocolError(ctx, fasthttp.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// protocolError answers a sandbox-generated (not model) error the way the
// real gateway and inference-proxy do: OpenAI-shaped JSON, never encrypted,
// marked Privatemode-Encrypted: false.
func protocolError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.Response.Header.Set("Privatemode-Encrypted", "false")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b := make([]byte, 0, len(msg)+64)
	b = append(b, `{"error":{"message":`...)
	b = appendString(b, msg)
	b = append(b, `,"type":"","code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, "}}"...)
	ctx.SetBody(b)
}
