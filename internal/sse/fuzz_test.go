package sse

import (
	"bytes"
	"io"
	"testing"
)

// refResult parses a whole stream held in memory with the simplest code that
// follows the rules, as an oracle for the streaming Reader.
func refResult(in []byte, maxEvent int) result {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	in = bytes.TrimPrefix(in, bom)
	var res result
	var data []byte
	var cur ev
	size, pending := 0, false
	for {
		i := bytes.IndexAny(in, "\r\n")
		if i < 0 {
			switch {
			case len(in) > maxEvent:
				res.err = ErrEventTooLarge
			case pending || len(in) > 0 && in[0] != ':':
				res.err = ErrTruncated
			default:
				res.err = io.EOF
			}
			return res
		}
		line := in[:i]
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			i++
		}
		in = in[i+1:]
		if len(line) > maxEvent {
			res.err = ErrEventTooLarge
			return res
		}
		switch {
		case len(line) == 0:
			if data != nil {
				cur.data = string(data[:len(data)-1])
				res.evs = append(res.evs, cur)
			} else if pending {
				res.discarded++
			}
			data, cur, size, pending = nil, ev{}, 0, false
			continue
		case line[0] == ':':
			res.comments++
			continue
		}
		pending = true
		if size += len(line); size > maxEvent {
			res.err = ErrEventTooLarge
			return res
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(name) {
		case "data":
			data = append(append(data, value...), '\n')
		case "event":
			cur.typ = string(value)
		case "id":
			if !bytes.Contains(value, []byte{0}) {
				cur.id, cur.hasID = string(value), true
			}
		case "retry":
			if n, ok := parseDigits(value); ok {
				cur.retry, cur.hasRetry = n, true
			}
		}
	}
}

// FuzzReader checks the streaming Reader against the in-memory reference
// for any input, any read size and a small event bound, and that memory
// stays within the bound.
func FuzzReader(f *testing.F) {
	for _, tc := range parserCases {
		f.Add([]byte(tc.in), uint8(1), uint16(tc.maxEvent))
		f.Add([]byte(tc.in), uint8(3), uint16(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, maxEvent uint16) {
		me := int(maxEvent % 300) // 0 = default
		want := refResult(in, me)
		r := NewReader(&chunkReader{b: in, n: int(chunk%17) + 1}, me)
		limit := me
		if limit == 0 {
			limit = DefaultMaxEvent
		}
		var got result
		for {
			e, err := r.Next()
			if cap(r.buf) > max(limit+1, minBufSize) || cap(r.data) > 2*limit+8 {
				t.Fatalf("buffers %d/%d exceed bound %d", cap(r.buf), cap(r.data), limit)
			}
			if err != nil {
				got.err = err
				break
			}
			if len(e.Data) >= limit {
				t.Fatalf("data of %d bytes, bound %d", len(e.Data), limit)
			}
			got.evs = append(got.evs, toEv(e))
		}
		got.comments, got.discarded = r.Comments(), r.Discarded()
		if !sameResult(got, want) {
			t.Fatalf("input %q chunk %d max %d:\n got %v\nwant %v", in, chunk%17+1, me, got, want)
		}
	})
}

// FuzzRoundTrip checks that what the Writer frames, the Reader reads back
// (with CR and CRLF in data turned into LF), and that the Writer refuses
// exactly the events it cannot frame.
func FuzzRoundTrip(f *testing.F) {
	f.Add("", "", false, 0, false, []byte("hello"))
	f.Add("delta", "42", true, 1500, true, []byte("a\r\nb\rc\n\nd\n"))
	f.Add("x y", "", true, 0, true, []byte(""))
	f.Add(" lead", " id", true, 7, false, []byte(" data: [DONE]\r"))
	f.Add("bad\nevent", "ok", false, -1, false, []byte("x"))
	f.Fuzz(func(t *testing.T, typ, id string, hasID bool, retry int, hasRetry bool, data []byte) {
		in := Event{Event: typ, ID: id, HasID: hasID, Retry: retry, HasRetry: hasRetry, Data: data}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		err := w.WriteEvent(in)
		invalid := bytes.ContainsAny([]byte(typ), "\r\n") || hasID && bytes.ContainsAny([]byte(id), "\r\n\x00") || hasRetry && retry < 0
		if invalid {
			if err != ErrInvalidEvent || buf.Len() != 0 {
				t.Fatalf("invalid event: err %v, wrote %q", err, buf.Bytes())
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteComment(typ + "\r" + id); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteData(data); err != nil {
			t.Fatal(err)
		}
		r := NewReader(&buf, 0)
		want := ev{typ: typ, data: string(normalize(data)), id: id, hasID: hasID, retry: retry, hasRetry: hasRetry}
		if !hasID {
			want.id = ""
		}
		if !hasRetry {
			want.retry = 0
		}
		for i, w := range []ev{want, {data: want.data}} {
			e, err := r.Next()
			if err != nil || toEv(e) != w {
				t.Fatalf("event %d: got %+v, %v; want %+v", i, toEv(e), err, w)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("want EOF, got %v", err)
		}
	})
}

// normalize turns CRLF and lone CR into LF, which is what a round trip does
// to data.
func normalize(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}
