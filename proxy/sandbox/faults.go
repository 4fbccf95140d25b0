package sandbox

import (
	"sync/atomic"
)

// Fault is an injected misbehaviour; see SetFault.
type Fault string

// Fault modes. All but FaultBadMeasurement apply to inference requests.
const (
	// FaultNone clears any fault.
	FaultNone Fault = ""
	// FaultDelay holds back the first byte of the response for
	// Options.FaultDelay, then answers normally.
	FaultDelay Fault = "delay"
	// FaultResetMidstream sends the 200 and a few SSE chunks, then resets
	// the TCP connection (RST, SO_LINGER 0). Unary requests are reset
	// before any response byte.
	FaultResetMidstream Fault = "reset-midstream"
	// FaultTruncate ends an SSE stream cleanly (valid chunked encoding)
	// after a few chunks, without finish_reason, usage chunk or [DONE]
	// (Anthropic: without message_delta/message_stop). A unary body is cut
	// in half with a matching Content-Length.
	FaultTruncate Fault = "truncate"
	// FaultNoSecret answers 500 `no secret for ID "<id>"` with
	// Privatemode-Encrypted: false even though the ID is known: the proxy
	// must re-exchange and retry.
	FaultNoSecret Fault = "no-secret"
	// FaultPlaintextFlag answers 200 with Privatemode-Encrypted: false and
	// the response in plaintext (an injected, unauthenticated body).
	FaultPlaintextFlag Fault = "plaintext-flag"
	// FaultBadMeasurement makes /privatemode/v1/attest return evidence
	// with a changed MRTD (TDX) or launch measurement (SEV-SNP). It counts
	// attestation requests, not inference requests.
	FaultBadMeasurement Fault = "bad-measurement"
	// FaultExpiredSecret drops the request's stored secret before lookup,
	// so the ID is unknown from then on (500 no secret for ID).
	FaultExpiredSecret Fault = "expired-secret"
	// Fault429 answers 429 Too Many Requests with Retry-After: 1, as the
	// gateway's rate limiter: plaintext, Privatemode-Encrypted: false.
	Fault429 Fault = "429"
	// Fault500 answers 500 with an encrypted model error body, as the real
	// server does for errors from vLLM.
	Fault500 Fault = "500"
)

// Faults lists every fault mode.
var Faults = []Fault{FaultDelay, FaultResetMidstream, FaultTruncate, FaultNoSecret, FaultPlaintextFlag,
	FaultBadMeasurement, FaultExpiredSecret, Fault429, Fault500}

// attestFault reports whether f applies to attestation requests.
func (f Fault) attestFault() bool { return f == FaultBadMeasurement }

// faultState is the active fault and how many requests it still applies to
// (negative: until cleared).
type faultState struct {
	fault     Fault
	remaining atomic.Int64
}

// SetFault makes the next count requests of the fault's kind (inference
// requests, or /attest requests for FaultBadMeasurement) misbehave as f.
// count < 0 applies f until cleared; count 0 or FaultNone clears. A new
// fault replaces the previous one. It is safe for concurrent use.
func (s *Server) SetFault(f Fault, count int) {
	if f == FaultNone || count == 0 {
		s.fault.Store(nil)
		return
	}
	st := &faultState{fault: f}
	st.remaining.Store(int64(count))
	s.fault.Store(st)
}

// takeFault consumes one application of the active fault if it applies to
// this kind of request. The no-fault path is one atomic load.
func (s *Server) takeFault(attest bool) Fault {
	st := s.fault.Load()
	if st == nil || st.fault.attestFault() != attest {
		return FaultNone
	}
	for {
		n := st.remaining.Load()
		switch {
		case n < 0:
			return st.fault
		case n == 0:
			s.fault.CompareAndSwap(st, nil)
			return FaultNone
		case st.remaining.CompareAndSwap(n, n-1):
			if n == 1 {
				s.fault.CompareAndSwap(st, nil)
			}
			return st.fault
		}
	}
}
