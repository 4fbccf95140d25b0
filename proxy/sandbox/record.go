package sandbox

import (
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// RecordedRequest is one request exactly as it reached the sandbox, before
// any decryption: what a network observer between the proxy and the
// backend would see.
type RecordedRequest struct {
	Seq    uint64 // arrival order, from 1
	Time   time.Time
	Method string
	Path   string // with query
	Header http.Header
	Body   []byte // at most MaxRecordedBody bytes
	// Truncated says Body was cut at MaxRecordedBody.
	Truncated bool
}

// recorder is a lock-free ring of the last requests: writers claim a slot
// with one atomic add and publish with one atomic store.
type recorder struct {
	next  atomic.Uint64
	slots []atomic.Pointer[RecordedRequest]
}

func newRecorder(size int) *recorder {
	if size < 0 {
		return nil
	}
	return &recorder{slots: make([]atomic.Pointer[RecordedRequest], size)}
}

func (r *recorder) record(ctx *fasthttp.RequestCtx) {
	if r == nil {
		return
	}
	seq := r.next.Add(1)
	body := ctx.PostBody()
	rr := &RecordedRequest{
		Seq:       seq,
		Time:      time.Now(),
		Method:    string(ctx.Method()),
		Path:      string(ctx.RequestURI()),
		Header:    make(http.Header, ctx.Request.Header.Len()),
		Truncated: len(body) > MaxRecordedBody,
	}
	rr.Body = append([]byte(nil), body[:min(len(body), MaxRecordedBody)]...)
	for k, v := range ctx.Request.Header.All() {
		key := http.CanonicalHeaderKey(string(k))
		rr.Header[key] = append(rr.Header[key], string(v))
	}
	r.slots[(seq-1)%uint64(len(r.slots))].Store(rr)
}

// Requests returns the recorded requests, oldest first: every request the
// sandbox received, raw, as long as the ring (Options.RecordSize) holds it.
func (s *Server) Requests() []RecordedRequest {
	if s.rec == nil {
		return nil
	}
	out := make([]RecordedRequest, 0, len(s.rec.slots))
	for i := range s.rec.slots {
		if rr := s.rec.slots[i].Load(); rr != nil {
			out = append(out, *rr)
		}
	}
	slices.SortFunc(out, func(a, b RecordedRequest) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out
}
