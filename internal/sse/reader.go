package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
)

const (
	initialBufSize = 64 << 10 // read buffer; grows only for longer lines
	minBufSize     = 16
	maxInterned    = 64 // distinct event type strings kept per Reader
	maxInternLen   = 64
	maxEmptyReads  = 100 // like bufio: consecutive (0, nil) reads before io.ErrNoProgress
)

var bom = []byte{0xEF, 0xBB, 0xBF}

// Reader parses a server-sent event stream into events.
//
// Memory is bounded by the maxEvent given to NewReader: the read buffer
// never exceeds maxEvent+1 bytes (it starts at 64 KiB and grows only for
// longer lines), and the event being assembled never exceeds maxEvent, so a
// Reader holds at most about three times maxEvent. In steady state (events
// of similar size, event types from a small set, no id fields) Next does not
// allocate. A Reader is not safe for concurrent use.
type Reader struct {
	src      io.Reader
	buf      []byte
	r, w     int   // unread bytes are buf[r:w]
	scanned  int   // buf[r:r+scanned] is known to hold no CR or LF
	lfScan   int   // buf[from:lfScan] holds no LF, for any line start from
	rerr     error // first error from src, reported once buffered bytes are used
	final    error // terminal error, returned by every later Next
	maxEvent int
	limit    int // largest read buffer
	started  bool
	skipLF   bool // the last line ended in CR: a following LF belongs to it

	// The event being assembled.
	data     []byte // every data value followed by LF
	evType   []byte
	id       string
	hasID    bool
	retry    int
	hasRetry bool
	size     int  // bytes of the event's non-comment lines
	pending  bool // a non-comment line was seen since the last blank line

	lastID       string
	reconnect    int
	hasReconnect bool
	comments     int
	discarded    int
	intern       map[string]string
}

// NewReader returns a Reader of the event stream src. maxEvent bounds every
// line and the sum of the lengths of the non-comment lines of one event
// (line terminators not counted); exceeding it makes Next return
// ErrEventTooLarge. maxEvent <= 0 means DefaultMaxEvent, and values above
// 1 GiB are lowered to 1 GiB. Since a data line carries its field name,
// the Data of a dispatched event is always shorter than maxEvent.
func NewReader(src io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	maxEvent = min(maxEvent, maxMaxEvent)
	limit := max(maxEvent+1, minBufSize)
	r := &Reader{maxEvent: maxEvent, limit: limit, buf: make([]byte, min(initialBufSize, limit))}
	r.Reset(src)
	return r
}

// Reset makes r read a new stream from src, with the same bound, reusing
// its buffers (a read buffer grown beyond 64 KiB is released) and clearing
// all stream state, including the counters.
func (r *Reader) Reset(src io.Reader) {
	if len(r.buf) > initialBufSize {
		r.buf = make([]byte, initialBufSize)
	}
	if cap(r.data) > initialBufSize {
		r.data = nil
	}
	*r = Reader{
		src: src, buf: r.buf, maxEvent: r.maxEvent, limit: r.limit,
		data: r.data[:0], evType: r.evType[:0], intern: r.intern,
	}
}

// Comments returns how many comment lines (lines starting with ":", such as
// the keep-alive ": ping") the Reader has skipped so far.
func (r *Reader) Comments() int { return r.comments }

// Discarded returns how many events the Reader has not dispatched because
// they had fields but no data line, as the standard requires. For example
// the malformed "event: error\n\ndata: {...}\n\n" yields one discarded
// event (the type alone) and one message event holding the data.
func (r *Reader) Discarded() int { return r.discarded }

// LastEventID returns the standard's last-event-ID buffer: the value of the
// most recent valid id field in the stream, whether or not its event was
// dispatched. It is what a client would send as Last-Event-ID.
func (r *Reader) LastEventID() string { return r.lastID }

// Retry returns the stream's reconnection time in milliseconds from the
// most recent valid retry field, whether or not its event was dispatched,
// and whether there was one. Valid means ASCII digits only, at least one,
// and a value that fits in an int.
func (r *Reader) Retry() (int, bool) { return r.reconnect, r.hasReconnect }

// Next returns the next dispatched event. Events without data lines are
// not dispatched (see Discarded), comment lines are skipped (see Comments).
//
// Next returns io.EOF when the stream ends cleanly (after a blank line or
// between events), ErrTruncated when it ends inside an event,
// ErrEventTooLarge when the bound is exceeded, and any other error of the
// underlying reader as is. Every error is final: later calls return it
// again. The returned Data is valid until the next call to Next or Reset.
func (r *Reader) Next() (Event, error) {
	if r.final != nil {
		return Event{}, r.final
	}
	if !r.started {
		r.started = true
		for r.w-r.r < len(bom) && r.rerr == nil {
			r.fill()
		}
		if bytes.HasPrefix(r.buf[r.r:r.w], bom) {
			r.r += len(bom)
		}
	}
	r.resetEvent()
	for {
		line, err := r.readLine()
		if err != nil {
			r.final = err
			return Event{}, err
		}
		if len(line) == 0 {
			if len(r.data) == 0 {
				if r.pending {
					r.discarded++
				}
				r.resetEvent()
				continue
			}
			return Event{
				Event: r.eventType(),
				Data:  r.data[:len(r.data)-1],
				ID:    r.id, HasID: r.hasID,
				Retry: r.retry, HasRetry: r.hasRetry,
			}, nil
		}
		if line[0] == ':' {
			r.comments++
			continue
		}
		r.pending = true
		r.size += len(line)
		if r.size > r.maxEvent {
			r.final = ErrEventTooLarge
			return Event{}, ErrEventTooLarge
		}
		r.field(line)
	}
}

func (r *Reader) resetEvent() {
	r.data = r.data[:0]
	r.evType = r.evType[:0]
	r.id, r.hasID = "", false
	r.retry, r.hasRetry = 0, false
	r.size = 0
	r.pending = false
}

// field applies one field line (not empty, not a comment).
func (r *Reader) field(line []byte) {
	name, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
	case "event":
		r.evType = append(r.evType[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			return // the standard ignores ids containing NULL
		}
		if string(value) != r.lastID {
			r.lastID = string(value)
		}
		r.id, r.hasID = r.lastID, true
	case "retry":
		if n, ok := parseDigits(value); ok {
			r.retry, r.hasRetry = n, true
			r.reconnect, r.hasReconnect = n, true
		}
	}
}

func parseDigits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int(c - '0')
		if n > (math.MaxInt-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// eventType returns the event type as a string, reusing the strings of
// types seen before so that typical streams do not allocate.
func (r *Reader) eventType() string {
	if len(r.evType) == 0 {
		return ""
	}
	if s, ok := r.intern[string(r.evType)]; ok {
		return s
	}
	s := string(r.evType)
	if len(s) <= maxInternLen && len(r.intern) < maxInterned {
		if r.intern == nil {
			r.intern = make(map[string]string)
		}
		r.intern[s] = s
	}
	return s
}

// readLine returns the next line without its terminator. The line aliases
// the read buffer and is valid until the next readLine.
func (r *Reader) readLine() ([]byte, error) {
	for {
		if r.skipLF && r.r < r.w {
			if r.buf[r.r] == '\n' {
				r.r++
			}
			r.skipLF = false
		}
		if !r.skipLF {
			if end := r.findEOL(r.r + r.scanned); end >= 0 {
				line := r.buf[r.r:end]
				r.skipLF = r.buf[end] == '\r'
				r.r = end + 1
				r.scanned = 0
				if len(line) > r.maxEvent {
					return nil, ErrEventTooLarge
				}
				return line, nil
			}
			r.scanned = r.w - r.r
			if r.scanned > r.maxEvent {
				return nil, ErrEventTooLarge
			}
		}
		if r.rerr != nil {
			return nil, r.endOfInput()
		}
		r.fill()
	}
}

// findEOL returns the index in buf of the first CR or LF in buf[from:w],
// or -1. It remembers how far it has found no LF, so that streams with
// CR-only line endings are not scanned quadratically.
func (r *Reader) findEOL(from int) int {
	if r.lfScan < from {
		r.lfScan = from
	}
	lf := r.w
	if i := bytes.IndexByte(r.buf[r.lfScan:r.w], '\n'); i >= 0 {
		lf = r.lfScan + i
	}
	r.lfScan = lf
	if j := bytes.IndexByte(r.buf[from:lf], '\r'); j >= 0 {
		return from + j
	}
	if lf < r.w {
		return lf
	}
	return -1
}

// endOfInput decides what the end of the underlying stream means.
func (r *Reader) endOfInput() error {
	if r.rerr != io.EOF {
		return r.rerr
	}
	rest := r.buf[r.r:r.w]
	if r.pending || len(rest) > 0 && rest[0] != ':' {
		return ErrTruncated
	}
	return io.EOF
}

// fill reads once more from src, first making room in the buffer: moving
// the unread bytes to the front and, if the buffer is full, growing it
// (never beyond limit).
func (r *Reader) fill() {
	if r.r > 0 {
		n := copy(r.buf, r.buf[r.r:r.w])
		r.lfScan = max(r.lfScan-r.r, 0)
		r.r, r.w = 0, n
	}
	if r.w == len(r.buf) {
		if len(r.buf) >= r.limit { // unreachable: readLine stops at maxEvent
			r.rerr = ErrEventTooLarge
			return
		}
		nb := make([]byte, min(2*len(r.buf), r.limit))
		copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	for range maxEmptyReads {
		n, err := r.src.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			r.rerr = errBadRead
			return
		}
		r.w += n
		if err != nil {
			r.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.rerr = io.ErrNoProgress
}

var errBadRead = errors.New("sse: underlying reader returned an invalid count")
