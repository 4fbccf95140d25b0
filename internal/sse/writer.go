package sse

import (
	"bytes"
	"io"
	"strconv"
	"strings"
)

// maxKeptBuf is the largest framing buffer a Writer keeps between events.
const maxKeptBuf = 1 << 20

// Writer frames events onto an underlying writer. Each event or comment is
// handed to the underlying writer in a single Write call, so an event is
// never split across a flush of a buffered writer by this package; flushing
// is the caller's business. Writes do not allocate once the internal
// framing buffer has reached the size of the largest event (buffers above
// 1 MiB are released after use). A Writer is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
	err error
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteEvent writes ev as
//
//	event: <Event>       (only if Event != "")
//	id: <ID>             (only if HasID)
//	retry: <Retry>       (only if HasRetry)
//	data: <line>         (one per line of Data, at least one)
//	<blank line>
//
// Data is split into lines at LF, CRLF and CR. A Writer always writes at
// least one data line, so every written event is dispatched by a
// conforming reader; an empty Data gives "data: \n".
//
// Round trip: reading back what WriteEvent wrote yields Event, ID, HasID,
// Retry and HasRetry unchanged, and Data with every CRLF and lone CR
// replaced by LF (all other bytes, leading spaces and trailing LFs
// included, are preserved). Events that cannot be framed faithfully (see
// ErrInvalidEvent) are refused without writing anything. An error from the
// underlying writer, or a short write, is returned and makes every later
// write fail with it.
func (w *Writer) WriteEvent(ev Event) error {
	if w.err != nil {
		return w.err
	}
	if strings.ContainsAny(ev.Event, "\r\n") || ev.HasID && strings.ContainsAny(ev.ID, "\r\n\x00") ||
		ev.HasRetry && ev.Retry < 0 {
		return ErrInvalidEvent
	}
	b := w.buf[:0]
	if ev.Event != "" {
		b = append(b, "event: "...)
		b = append(b, ev.Event...)
		b = append(b, '\n')
	}
	if ev.HasID {
		b = append(b, "id: "...)
		b = append(b, ev.ID...)
		b = append(b, '\n')
	}
	if ev.HasRetry {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, int64(ev.Retry), 10)
		b = append(b, '\n')
	}
	b = appendLines(b, "data: ", ev.Data)
	b = append(b, '\n')
	return w.flush(b)
}

// WriteData writes a data-only event; it is WriteEvent(Event{Data: data})
// and does not allocate.
func (w *Writer) WriteData(data []byte) error {
	return w.WriteEvent(Event{Data: data})
}

// WriteComment writes text as a comment followed by a blank line: ": text\n\n"
// (":\n\n" for an empty text). A text with line breaks becomes several
// comment lines. Readers ignore comments, so this serves as a heartbeat or
// as a probe for a disconnected client. The blank line dispatches nothing,
// since the Writer never leaves an event open.
func (w *Writer) WriteComment(text string) error {
	if w.err != nil {
		return w.err
	}
	b := w.buf[:0]
	if text == "" {
		b = append(b, ":\n"...)
	} else {
		for {
			i := strings.IndexAny(text, "\r\n")
			if i < 0 {
				b = append(b, ": "...)
				b = append(b, text...)
				b = append(b, '\n')
				break
			}
			b = append(b, ": "...)
			b = append(b, text[:i]...)
			b = append(b, '\n')
			if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
				i++
			}
			text = text[i+1:]
		}
	}
	b = append(b, '\n')
	return w.flush(b)
}

// appendLines appends prefix+line+"\n" for every line of data, splitting at
// LF, CRLF and CR; data without line breaks (also empty data) is one line.
// It scans every byte a bounded number of times, also for CR-only data.
func appendLines(b []byte, prefix string, data []byte) []byte {
	lf := bytes.IndexByte(data, '\n') // next LF in data, or len(data)
	if lf < 0 {
		lf = len(data)
	}
	for {
		end := lf
		if j := bytes.IndexByte(data[:lf], '\r'); j >= 0 {
			end = j
		}
		b = append(b, prefix...)
		b = append(b, data[:end]...)
		b = append(b, '\n')
		if end == len(data) {
			return b
		}
		next := end + 1
		if data[end] == '\r' && next < len(data) && data[next] == '\n' {
			next++
		}
		data = data[next:]
		if next > lf {
			if lf = bytes.IndexByte(data, '\n'); lf < 0 {
				lf = len(data)
			}
		} else {
			lf -= next
		}
	}
}

func (w *Writer) flush(b []byte) error {
	n, err := w.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if cap(b) <= maxKeptBuf {
		w.buf = b[:0]
	} else {
		w.buf = nil
	}
	if err != nil {
		w.err = err
	}
	return err
}
