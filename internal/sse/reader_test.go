package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// ev is a comparable form of Event for tables.
type ev struct {
	typ, data, id   string
	hasID, hasRetry bool
	retry           int
}

func toEv(e Event) ev {
	return ev{typ: e.Event, data: string(e.Data), id: e.ID, hasID: e.HasID, retry: e.Retry, hasRetry: e.HasRetry}
}

type result struct {
	evs       []ev
	err       error
	comments  int
	discarded int
}

func (r result) String() string {
	return fmt.Sprintf("events=%+v err=%v comments=%d discarded=%d", r.evs, r.err, r.comments, r.discarded)
}

func readAll(src io.Reader, maxEvent int) result {
	r := NewReader(src, maxEvent)
	var res result
	for {
		e, err := r.Next()
		if err != nil {
			res.err = err
			break
		}
		res.evs = append(res.evs, toEv(e))
	}
	if _, err := r.Next(); err != res.err {
		res.err = fmt.Errorf("error not sticky: %v then %v", res.err, err)
	}
	res.comments, res.discarded = r.Comments(), r.Discarded()
	return res
}

func sameResult(a, b result) bool {
	if len(a.evs) != len(b.evs) || a.err != b.err || a.comments != b.comments || a.discarded != b.discarded {
		return false
	}
	for i := range a.evs {
		if a.evs[i] != b.evs[i] {
			return false
		}
	}
	return true
}

// splitReader returns its input in two reads, split at n.
type splitReader struct {
	b []byte
	n int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(s.b))
	if s.n > 0 {
		k = min(k, s.n)
		s.n -= k
	}
	copy(p, s.b[:k])
	s.b = s.b[k:]
	return k, nil
}

// chunkReader returns its input in reads of at most n bytes.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(c.b), c.n)
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

// readers returns the input as seen through readers that split it in every
// way that matters to a parser.
func readers(in string) map[string]func() io.Reader {
	b := []byte(in)
	m := map[string]func() io.Reader{
		"whole":   func() io.Reader { return bytes.NewReader(b) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"dataerr": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	}
	for i := 1; i < len(b); i++ {
		m[fmt.Sprintf("split%d", i)] = func() io.Reader { return &splitReader{b: b, n: i} }
	}
	return m
}

var parserCases = []struct {
	name     string
	in       string
	maxEvent int
	want     result
}{
	{"whatwg stock", "data: YHOO\ndata: +2\ndata: 10\n\n", 0,
		result{evs: []ev{{data: "YHOO\n+2\n10"}}, err: io.EOF}},
	{"whatwg ids", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n", 0,
		result{evs: []ev{{data: "first event", id: "1", hasID: true}, {data: "second event", hasID: true}}, err: ErrTruncated, comments: 1}},
	{"whatwg empty data", "data\n\ndata\ndata\n\ndata:", 0,
		result{evs: []ev{{data: ""}, {data: "\n"}}, err: ErrTruncated}},
	{"whatwg space", "data:test\n\ndata: test\n\n", 0,
		result{evs: []ev{{data: "test"}, {data: "test"}}, err: io.EOF}},
	{"crlf", "data: a\r\ndata: b\r\n\r\n", 0, result{evs: []ev{{data: "a\nb"}}, err: io.EOF}},
	{"cr only", "data: a\rdata: b\r\rdata: c\r\r", 0, result{evs: []ev{{data: "a\nb"}, {data: "c"}}, err: io.EOF}},
	{"mixed", "data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\r", 0,
		result{evs: []ev{{data: "a\nb\nc"}, {data: "d"}}, err: io.EOF}},
	{"cr then crlf", "data: a\r\r\ndata: b\n\n", 0, result{evs: []ev{{data: "a"}, {data: "b"}}, err: io.EOF}},
	{"lf then cr", "data: a\n\rdata: b\n\n", 0, result{evs: []ev{{data: "a"}, {data: "b"}}, err: io.EOF}},
	{"lf cr lf", "data: a\n\r\ndata: b\r\n\n", 0, result{evs: []ev{{data: "a"}, {data: "b"}}, err: io.EOF}},
	{"comments", ": ping\n\n: ping\ndata: x\n: mid\ndata: y\n\n:\n\n:keep-alive\r\n\r\n", 0,
		result{evs: []ev{{data: "x\ny"}}, err: io.EOF, comments: 5}},
	{"id with null ignored", "id: 7\ndata: a\n\nid: a\x00b\ndata: b\n\n", 0,
		result{evs: []ev{{data: "a", id: "7", hasID: true}, {data: "b"}}, err: io.EOF}},
	{"id last wins, not carried", "id: 1\nid: 2\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n", 0,
		result{evs: []ev{{data: "a", id: "2", hasID: true}, {data: "b"}, {data: "c", hasID: true}}, err: io.EOF}},
	{"retry", "retry: 1000\ndata: a\n\nretry: 10a\ndata: b\n\nretry:\ndata: c\n\nretry: -1\nretry:  5\nretry: 99999999999999999999999\ndata: d\n\nretry:0\nretry: 250\ndata: e\n\n", 0,
		result{evs: []ev{{data: "a", retry: 1000, hasRetry: true}, {data: "b"}, {data: "c"}, {data: "d"}, {data: "e", retry: 250, hasRetry: true}}, err: io.EOF}},
	{"data without colon", "data\n\n", 0, result{evs: []ev{{data: ""}}, err: io.EOF}},
	{"leading space rule", "data:  two\n\ndata:\tx\n\ndata:x\n\ndata: \n\ndata:\n\ndata: a: b\n\n", 0,
		result{evs: []ev{{data: " two"}, {data: "\tx"}, {data: "x"}, {data: ""}, {data: ""}, {data: "a: b"}}, err: io.EOF}},
	{"unknown fields", "foo: bar\ndata: x\nDATA: y\n data: z\nevent\ndata:\x00\n\n", 0,
		result{evs: []ev{{data: "x\n\x00"}}, err: io.EOF}},
	{"bom", "\xEF\xBB\xBFdata: x\n\n", 0, result{evs: []ev{{data: "x"}}, err: io.EOF}},
	{"bom only once", "\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n", 0,
		result{evs: []ev{{data: "y"}}, err: io.EOF, discarded: 1}},
	{"bom later is data", "data: x\n\n\xEF\xBB\xBFdata: y\n\n", 0,
		result{evs: []ev{{data: "x"}}, err: io.EOF, discarded: 1}},
	{"partial bom", "\xEF\xBB", 0, result{err: ErrTruncated}},
	{"event types", "event: add\ndata: 1\n\nevent: \ndata: 2\n\nevent: message\ndata: 3\n\nevent:x\nevent: y\ndata: 4\n\n", 0,
		result{evs: []ev{{typ: "add", data: "1"}, {data: "2"}, {typ: "message", data: "3"}, {typ: "y", data: "4"}}, err: io.EOF}},
	{"event without data not dispatched", "event: x\n\ndata: y\n\nid: 3\nretry: 5\n\n", 0,
		result{evs: []ev{{data: "y"}}, err: io.EOF, discarded: 2}},
	{"upstream error framing", "event: error\n\ndata: {\"error\":{}}\n\n", 0,
		result{evs: []ev{{data: `{"error":{}}`}}, err: io.EOF, discarded: 1}},
	{"done", "data: {\"a\":1}\n\ndata: [DONE]\n\n", 0,
		result{evs: []ev{{data: `{"a":1}`}, {data: "[DONE]"}}, err: io.EOF}},
	{"empty", "", 0, result{err: io.EOF}},
	{"blank lines only", "\n\r\n\r\n", 0, result{err: io.EOF}},
	{"trailing comment unterminated", "data: a\n\n: ping", 0, result{evs: []ev{{data: "a"}}, err: io.EOF, comments: 0}},
	{"truncated after line", "data: a\n\ndata: b\n", 0, result{evs: []ev{{data: "a"}}, err: ErrTruncated}},
	{"truncated mid line", "data: a\n\ndata: {\"b", 0, result{evs: []ev{{data: "a"}}, err: ErrTruncated}},
	{"truncated event only", "event: x\n", 0, result{err: ErrTruncated}},
	{"truncated after cr", "data: a\r", 0, result{err: ErrTruncated}},
	{"complete after cr", "data: a\r\r", 0, result{evs: []ev{{data: "a"}}, err: io.EOF}},
	{"max event exact", "data: abcd\n\n", 10, result{evs: []ev{{data: "abcd"}}, err: io.EOF}},
	{"line too large", "data: a\n\ndata: abcde\n\n", 10, result{evs: []ev{{data: "a"}}, err: ErrEventTooLarge}},
	{"event too large", "data: ab\ndata: cd\n\n", 10, result{err: ErrEventTooLarge}},
	{"comment too large", ": 0123456789\n", 10, result{err: ErrEventTooLarge}},
	{"comments not counted", "data: ab\n: 12345678\n: 12345678\n\n", 10, result{evs: []ev{{data: "ab"}}, err: io.EOF, comments: 2}},
	{"unterminated too large", "data: 0123456789", 10, result{err: ErrEventTooLarge}},
}

func TestParser(t *testing.T) {
	for _, tc := range parserCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := refResult([]byte(tc.in), tc.maxEvent); !sameResult(got, tc.want) {
				t.Fatalf("reference parser:\n got %v\nwant %v", got, tc.want)
			}
			for name, mk := range readers(tc.in) {
				if got := readAll(mk(), tc.maxEvent); !sameResult(got, tc.want) {
					t.Fatalf("%s reader:\n got %v\nwant %v", name, got, tc.want)
				}
			}
		})
	}
}

func TestStreamState(t *testing.T) {
	r := NewReader(strings.NewReader("id: 1\nretry: 300\n\ndata: a\n\nid: a\x00\ndata: b\n\n"), 0)
	if _, ok := r.Retry(); ok {
		t.Fatal("retry before any")
	}
	e, err := r.Next()
	if err != nil || string(e.Data) != "a" || e.HasID || e.HasRetry {
		t.Fatalf("got %+v, %v", e, err)
	}
	if r.LastEventID() != "1" {
		t.Fatalf("LastEventID %q", r.LastEventID())
	}
	if n, ok := r.Retry(); !ok || n != 300 {
		t.Fatalf("Retry %d %v", n, ok)
	}
	if _, err := r.Next(); err != nil || r.LastEventID() != "1" {
		t.Fatalf("%v %q", err, r.LastEventID())
	}
	r.Reset(strings.NewReader("data: z\n\n"))
	if e, err := r.Next(); err != nil || string(e.Data) != "z" || r.LastEventID() != "" {
		t.Fatalf("after Reset: %+v %v", e, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatal(err)
	}
}

func TestLongLines(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16) // 5 MiB
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		in := "data: a" + eol + eol + "data: " + string(big) + eol + "data: x" + eol + eol + "data: b" + eol + eol
		for _, n := range []int{512, 4096, 100000} {
			res := readAll(&chunkReader{b: []byte(in), n: n}, 0)
			want := string(big) + "\nx"
			if res.err != io.EOF || len(res.evs) != 3 || res.evs[0].data != "a" || res.evs[1].data != want || res.evs[2].data != "b" {
				t.Fatalf("eol %q read %d: err %v, %d events", eol, n, res.err, len(res.evs))
			}
		}
	}
}

// endless yields the same byte forever.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

func TestBoundedMemory(t *testing.T) {
	const maxEvent = 1 << 20
	for _, src := range []io.Reader{
		io.MultiReader(strings.NewReader("data: "), endless('a')),
		io.MultiReader(strings.NewReader(": "), endless('a')),
		endless('\n'), // endless blank lines: no event, no memory
	} {
		r := NewReader(io.LimitReader(src, 64<<20), maxEvent)
		_, err := r.Next()
		if cap(r.buf) > maxEvent+1 || cap(r.data) > 2*maxEvent {
			t.Fatalf("buffers grew to %d/%d", cap(r.buf), cap(r.data))
		}
		if err != ErrEventTooLarge && err != io.EOF {
			t.Fatalf("err %v", err)
		}
	}
	// Many lines each under the limit, together over it.
	line := "data: " + strings.Repeat("x", 50) + "\n"
	r := NewReader(strings.NewReader(strings.Repeat(line, 1000)), 1000)
	if _, err := r.Next(); err != ErrEventTooLarge || cap(r.data) > 2000 {
		t.Fatalf("err %v cap %d", err, cap(r.data))
	}
}

func TestReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom)), 0)
	if e, err := r.Next(); err != nil || string(e.Data) != "a" {
		t.Fatalf("%+v %v", e, err)
	}
	for range 2 {
		if _, err := r.Next(); err != boom {
			t.Fatalf("want boom, got %v", err)
		}
	}
	r = NewReader(iotest.TimeoutReader(strings.NewReader("data: a\n\n")), 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != iotest.ErrTimeout {
		t.Fatalf("want timeout, got %v", err)
	}
	r = NewReader(zeroReader{}, 0)
	if _, err := r.Next(); err != io.ErrNoProgress {
		t.Fatalf("want ErrNoProgress, got %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// repeater yields the same stream bytes forever.
type repeater struct {
	b   []byte
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.b[r.off:])
		n += k
		r.off = (r.off + k) % len(r.b)
	}
	return n, nil
}

func TestReaderNoAllocs(t *testing.T) {
	for _, stream := range []string{
		"data: " + strings.Repeat("x", 300) + "\n\n",
		"event: content_block_delta\r\ndata: " + strings.Repeat("y", 250) + "\r\n\r\n: ping\r\n\r\nevent: ping\r\ndata: {}\r\n\r\n",
		"id: 5\nretry: 100\ndata: " + strings.Repeat("z", 200) + "\ndata: 2\r\r",
	} {
		r := NewReader(&repeater{b: []byte(stream)}, 0)
		for range 1000 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		if n := testing.AllocsPerRun(1000, func() { _, _ = r.Next() }); n != 0 {
			t.Errorf("%q: %v allocations per event", stream[:20], n)
		}
	}
}
