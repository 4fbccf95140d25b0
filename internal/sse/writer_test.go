package sse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

func TestWriterFraming(t *testing.T) {
	cases := []struct {
		ev   Event
		want string
	}{
		{Event{Data: []byte("x")}, "data: x\n\n"},
		{Event{}, "data: \n\n"},
		{Event{Event: "error", Data: []byte(`{"error":{}}`)}, "event: error\ndata: {\"error\":{}}\n\n"},
		{Event{Event: "e", ID: "7", HasID: true, Retry: 1500, HasRetry: true, Data: []byte("a")},
			"event: e\nid: 7\nretry: 1500\ndata: a\n\n"},
		{Event{HasID: true, HasRetry: true, Data: []byte("a")}, "id: \nretry: 0\ndata: a\n\n"},
		{Event{Data: []byte("a\nb\r\nc\rd")}, "data: a\ndata: b\ndata: c\ndata: d\n\n"},
		{Event{Data: []byte("\n")}, "data: \ndata: \n\n"},
		{Event{Data: []byte("a\r\r\n\n")}, "data: a\ndata: \ndata: \ndata: \n\n"},
		{Event{Data: []byte(" x")}, "data:  x\n\n"},
		{Event{Data: []byte("[DONE]")}, "data: [DONE]\n\n"},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		if err := NewWriter(&b).WriteEvent(tc.ev); err != nil || b.String() != tc.want {
			t.Errorf("%+v: got %q, %v; want %q", tc.ev, b.String(), err, tc.want)
		}
	}
}

func TestWriterComment(t *testing.T) {
	for text, want := range map[string]string{
		"":          ":\n\n",
		"ping":      ": ping\n\n",
		"a\nb\r\nc": ": a\n: b\n: c\n\n",
		"a\r":       ": a\n: \n\n",
	} {
		var b bytes.Buffer
		if err := NewWriter(&b).WriteComment(text); err != nil || b.String() != want {
			t.Errorf("%q: got %q, %v; want %q", text, b.String(), err, want)
		}
	}
}

func TestWriterInvalid(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, e := range []Event{
		{Event: "a\nb"}, {Event: "a\r"}, {ID: "1\n", HasID: true}, {ID: "\x00", HasID: true},
		{Retry: -1, HasRetry: true},
	} {
		if err := w.WriteEvent(e); err != ErrInvalidEvent {
			t.Errorf("%+v: err %v", e, err)
		}
	}
	// Invalid values in fields that are not written are fine.
	if err := w.WriteEvent(Event{ID: "\n", Retry: -1}); err != nil || b.String() != "data: \n\n" {
		t.Fatalf("%q %v", b.String(), err)
	}
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestWriterErrors(t *testing.T) {
	boom := errors.New("boom")
	w := NewWriter(errWriter{boom})
	if err := w.WriteData([]byte("x")); err != boom {
		t.Fatal(err)
	}
	if err := w.WriteComment("x"); err != boom {
		t.Fatalf("not sticky: %v", err)
	}
	if err := NewWriter(shortWriter{}).WriteData([]byte("x")); err != io.ErrShortWrite {
		t.Fatal(err)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func TestWriterNoAllocs(t *testing.T) {
	w := NewWriter(io.Discard)
	data := []byte(strings.Repeat("d", 300))
	ev := Event{Event: "content_block_delta", ID: "123", HasID: true, Retry: 3000, HasRetry: true, Data: data}
	for name, f := range map[string]func(){
		"WriteData":    func() { _ = w.WriteData(data) },
		"WriteEvent":   func() { _ = w.WriteEvent(ev) },
		"WriteComment": func() { _ = w.WriteComment("ping") },
	} {
		f()
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

func randString(rng *rand.Rand, alphabet string, n int) string {
	b := make([]byte, rng.IntN(n+1))
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// TestRoundTrip writes random events, with comments between them, and reads
// them back through readers that split the stream at every byte.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab :\r\n\x00\xEF\xBB\xBF{}\"[]é"
	for round := range 200 {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		var want []ev
		for range rng.IntN(20) + 1 {
			e := Event{Data: []byte(randString(rng, alphabet, 40))}
			if rng.IntN(2) == 0 {
				e.Event = randString(rng, "xy :\x00", 8)
			}
			if rng.IntN(3) == 0 {
				e.ID, e.HasID = randString(rng, "12 :ab", 6), true
			}
			if rng.IntN(4) == 0 {
				e.Retry, e.HasRetry = rng.IntN(100000), true
			}
			if err := w.WriteEvent(e); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(3) == 0 {
				_ = w.WriteComment(randString(rng, alphabet, 10))
			}
			e.Data = normalize(e.Data)
			want = append(want, toEv(e))
		}
		for name, mk := range map[string]func() io.Reader{
			"whole":   func() io.Reader { return bytes.NewReader(buf.Bytes()) },
			"onebyte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(buf.Bytes())) },
			"chunk7":  func() io.Reader { return &chunkReader{b: buf.Bytes(), n: 7} },
		} {
			got := readAll(mk(), 0)
			if got.err != io.EOF || len(got.evs) != len(want) {
				t.Fatalf("round %d %s: %v, want %d events", round, name, got, len(want))
			}
			for i := range want {
				if got.evs[i] != want[i] {
					t.Fatalf("round %d %s event %d: got %+v want %+v", round, name, i, got.evs[i], want[i])
				}
			}
		}
	}
}
