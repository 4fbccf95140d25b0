// Package sse reads and writes server-sent events (the text/event-stream
// format of the WHATWG HTML standard, section 9.2 "Server-sent events")
// exactly, with bounded memory and without allocating per event.
//
// The Reader follows the standard's parsing rules: LF, CRLF and lone CR
// line endings (also when a CRLF pair is split across reads), a UTF-8 byte
// order mark at the start of the stream, comments, fields without a colon,
// one optional space after the colon, unknown fields, id values containing
// NULL, and non-digit retry values. It deliberately differs from the
// standard in two documented ways that matter to a relaying proxy: bytes are
// not UTF-8 decoded (invalid sequences are passed through, not replaced by
// U+FFFD), and an unterminated final event is reported as ErrTruncated
// rather than silently dropped.
//
// The Writer frames events so that any conforming reader parses back the
// same event (see WriteEvent for what a round trip preserves).
package sse

import "errors"

// DefaultMaxEvent is the event size bound NewReader uses when it is given a
// bound <= 0.
const DefaultMaxEvent = 8 << 20

// maxMaxEvent caps the bound so that the read buffer size cannot overflow.
const maxMaxEvent = 1 << 30

var (
	// ErrTruncated is returned by Reader.Next when the stream ends (io.EOF
	// from the underlying reader) in the middle of an event: after a
	// non-comment line that no blank line has yet terminated, or inside an
	// unterminated non-comment line. The incomplete event is not
	// dispatched. A stream that ends cleanly yields io.EOF instead.
	ErrTruncated = errors.New("sse: stream ended in the middle of an event")

	// ErrEventTooLarge is returned by Reader.Next when a single line, or the
	// lines of one event together, exceed the Reader's bound.
	ErrEventTooLarge = errors.New("sse: event exceeds the size limit")

	// ErrInvalidEvent is returned by Writer.WriteEvent for an event that
	// cannot be framed faithfully: an event type containing CR or LF, an id
	// containing CR, LF or NULL, or a negative retry. Nothing is written.
	ErrInvalidEvent = errors.New("sse: event cannot be framed")
)

// Event is one dispatched server-sent event.
type Event struct {
	// Event is the event type exactly as sent ("" when the event had no
	// event field, which the standard calls "message"; an explicit
	// "event: message" is kept as "message").
	Event string
	// Data holds the event's data lines joined with "\n" (the standard's
	// rule: every data line appends its value and a LF, and the final LF is
	// removed). A Reader returns a slice of its internal buffer, valid only
	// until the next call to Next; copy it to keep it.
	Data []byte
	// ID is the value of the last valid id field of this event, and HasID
	// reports whether there was one ("id:" with an empty value gives
	// HasID with ID ""). Unlike the standard's last-event-ID buffer, it is
	// not carried over to later events; see Reader.LastEventID.
	ID    string
	HasID bool
	// Retry is the reconnection time in milliseconds from this event's last
	// valid retry field, and HasRetry reports whether there was one.
	Retry    int
	HasRetry bool
}
