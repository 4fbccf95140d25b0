package proxy

import (
	"crypto/sha256"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// ReceiptSink receives one RequestRecord per inference request when it
// ends (a stream: after its last event). Admit is asked before anything is
// sent; an error refuses the request with 503, so nothing leaves without a
// receipt being possible. Implementations must be safe for concurrent use
// and must not block for long.
type ReceiptSink interface {
	Admit() error
	Receipt(RequestRecord)
}

// RequestRecord is what the proxy knows about one inference request: never
// content, only digests of the encrypted bytes and metadata.
type RequestRecord struct {
	Start    time.Time     // when the request arrived
	Sent     time.Time     // when the encrypted request left; zero if it never did
	Duration time.Duration // until the answer was complete
	Route    string        // the route's name: chat, completions, messages, embeddings, transcriptions
	Model    string
	Status   int
	Stream   bool
	Outcome  string // streams: receipts.OutcomeComplete, OutcomeCut or OutcomeClientGone
	// InTokens and OutTokens are the usage the backend reported (plain
	// fields of its answer), if any.
	InTokens, OutTokens int
	// RequestSHA256 is of the encrypted body as sent (the last attempt);
	// ResponseSHA256 of the encrypted answer as received, when Received.
	RequestSHA256, ResponseSHA256 [32]byte
	Received                      bool
	SecretID                      string
	// From the caller's internal headers (receipts.Header*).
	Feature, Workflow, Instance, User string
}

// receiptState follows one request for its receipt.
type receiptState struct {
	active  bool
	cut     bool
	rec     RequestRecord
	respSum hashReader
}

// beginReceipt asks the sink whether the request may proceed and takes the
// caller's metadata from the internal headers (they are never forwarded).
func (s *Server) beginReceipt(ctx *fasthttp.RequestCtx, tm *timing, meta requestMeta) error {
	if s.o.Receipts == nil {
		return nil
	}
	if err := s.o.Receipts.Admit(); err != nil {
		return newAPIError(fasthttp.StatusServiceUnavailable, errUnavailable,
			"the model service is not available right now: the appliance cannot write request receipts and is configured to refuse requests until it can (receipts.on_failure: refuse)", err)
	}
	h := &ctx.Request.Header
	r := &tm.rec.rec
	tm.rec.active = true
	r.Start, r.Route, r.Model, r.Stream = tm.start, tm.route, meta.Model, meta.Stream
	if rt := routes[tm.route]; rt != nil {
		r.Route = rt.name
	}
	r.Feature = headerValue(h.Peek(receipts.HeaderFeature))
	r.Workflow = headerValue(h.Peek(receipts.HeaderWorkflow))
	r.Instance = headerValue(h.Peek(receipts.HeaderInstance))
	r.User = headerValue(h.Peek(receipts.HeaderUser))
	return nil
}

// headerValue is an internal header's value when it looks like an
// identifier or base64 (letters, digits and _ - . : / @ + =, at most
// receipts.MaxHeaderValue bytes); anything else is dropped, so a client of
// the public listener cannot put free text into receipts.
func headerValue(b []byte) string {
	if len(b) > receipts.MaxHeaderValue {
		return ""
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_-.:/@+=", c) >= 0) {
			return ""
		}
	}
	return string(b)
}

// sent records the encrypted request as it leaves.
func (rs *receiptState) sent(sec envelope.Secret, enc []byte) {
	if rs.active {
		rs.rec.Sent, rs.rec.SecretID, rs.rec.RequestSHA256 = time.Now(), sec.ID, sha256.Sum256(enc)
	}
}

// received records a whole encrypted answer.
func (rs *receiptState) received(b []byte) {
	if rs.active {
		rs.rec.ResponseSHA256, rs.rec.Received = sha256.Sum256(b), true
	}
}

// decrypt is sess.AppendDecryptJSON that, when a receipt is kept, also
// takes the answer's or event's plain usage member from the same scan.
func (rs *receiptState) decrypt(sess *envelope.Session, dst, body []byte, plain envelope.Fields) ([]byte, error) {
	if !rs.active {
		return sess.AppendDecryptJSON(dst, body, plain)
	}
	out, usage, err := sess.AppendDecryptJSONMember(dst, body, plain, "usage")
	if err == nil && usage != nil {
		rs.usage(usage)
	}
	return out, err
}

// hashing returns body, hashed as it is read when a receipt is kept.
func (rs *receiptState) hashing(body io.Reader) io.Reader {
	if !rs.active {
		return body
	}
	rs.respSum = hashReader{r: body, h: sha256.New()}
	rs.rec.Received = true
	return &rs.respSum
}

// usage reads token counts from a plain usage object (OpenAI's or
// Anthropic's names); anything but a non-negative integer is ignored, and
// counts only grow (a stream may report usage more than once).
func (rs *receiptState) usage(raw []byte) {
	n, err := envelope.RawMember(raw, "prompt_tokens", "input_tokens", "completion_tokens", "output_tokens")
	if err != nil {
		return
	}
	for i, v := range n {
		c, err := strconv.Atoi(string(v))
		if v == nil || err != nil || c < 0 {
			continue
		}
		if i < 2 {
			rs.rec.InTokens = max(rs.rec.InTokens, c)
		} else {
			rs.rec.OutTokens = max(rs.rec.OutTokens, c)
		}
	}
}

// finishReceipt emits the receipt of a request whose answer is complete
// when the handler returns (streams emit theirs when they end).
func (s *Server) finishReceipt(ctx *fasthttp.RequestCtx, tm *timing) {
	if !tm.rec.active || tm.streamed {
		return
	}
	r := tm.rec.rec
	r.Status, r.Duration = ctx.Response.StatusCode(), time.Since(tm.start)
	s.o.Receipts.Receipt(r)
}

// streamReceipt emits a stream's receipt when it ends: complete when the
// protocol's end arrived, cut when the relay ended it with an error event,
// client gone otherwise.
func (s *Server) streamReceipt(tm *timing, status int, complete bool) {
	if !tm.rec.active {
		return
	}
	r := tm.rec.rec
	r.Status, r.Duration = status, time.Since(tm.start)
	switch {
	case tm.rec.cut:
		r.Outcome = receipts.OutcomeCut
	case complete:
		r.Outcome = receipts.OutcomeComplete
	default:
		r.Outcome = receipts.OutcomeClientGone
	}
	if tm.rec.respSum.h != nil {
		tm.rec.respSum.h.Sum(r.ResponseSHA256[:0])
	}
	s.o.Receipts.Receipt(r)
}

// hashReader hashes what is read through it.
type hashReader struct {
	r io.Reader
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}
