package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func FuzzScanObject(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstEncodingJSON(t, data)
	})
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add(Seal(vecKey, vecID, vecNonce, seqIV(0xa0), 0, []byte(`[{"role":"user","content":"hi"}]`)))
	f.Add([]byte(`"a:000102030405060708090a0b:000102030405060708090a0b:00000000000000000000000000000000"`))
	f.Add([]byte(`"a:b:c:d"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvelope(data)
		if err != nil {
			if !errors.Is(err, ErrNotEnvelope) {
				t.Fatal(err)
			}
			return
		}
		// Strict parsing means exactly one accepted spelling per envelope.
		again := fmt.Sprintf(`"%s:%x:%x:%x"`, e.ID, e.Nonce, e.IV, e.Ciphertext)
		if again != string(data) {
			t.Fatalf("non-canonical envelope accepted: %q", data)
		}
		_, _ = e.Open(vecKey, 0)
	})
}

// fuzzChunks are genuine SSE chunks for the session newSessionWithRand(testSecret, countReader) builds.
func fuzzChunks(t testing.TB) [][]byte {
	c, err := newSessionWithRand(testSecret, &countReader{})
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := c.EncryptJSON([]byte(`{"model":"m","messages":[]}`), ChatRequestPlain)
	srv := newServerSessionWithRand(lookupFor(testSecret), &countReader{n: 100})
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range []string{
		`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}`,
		`{"id":"x","usage":{"total_tokens":3},"choices":[]}`,
	} {
		enc, err := srv.EncryptJSON([]byte(p), ChatResponsePlain)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, enc)
	}
	return append(out, []byte(`{"id":"x","usage":null}`), []byte(`{}`), []byte(`{"choices":"x"}`))
}

func FuzzDecryptJSON(f *testing.F) {
	for _, c := range fuzzChunks(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := newSessionWithRand(testSecret, &countReader{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.DecryptJSON(data, ChatResponsePlain)
		if err != nil {
			if out != nil {
				t.Fatal("output returned with error")
			}
			return
		}
		// Success is only allowed if every non-plain value authenticates at its
		// traversal seq, and the output carries exactly those plaintexts.
		sc, oc := getScratch(), getScratch()
		defer putScratch(sc)
		defer putScratch(oc)
		if scanObject(data, sc) != nil || sc.sortMembers() != nil || scanObject(out, oc) != nil {
			t.Fatal("success on a body the scanner rejects")
		}
		if _, err := sc.assignSeqs(ChatResponsePlain, 0); err != nil {
			t.Fatal(err)
		}
		for i, m := range sc.members {
			o := oc.members[i]
			got := out[o.valStart:o.valEnd]
			if m.seq < 0 {
				if !bytes.Equal(got, data[m.valStart:m.valEnd]) {
					t.Fatal("plain field changed")
				}
				continue
			}
			e, err := ParseEnvelope(data[m.valStart:m.valEnd])
			if err != nil || e.ID != vecID || e.Nonce != s.Nonce() {
				t.Fatal("success with a non-envelope or foreign envelope")
			}
			pt, err := e.Open(vecKey, uint32(m.seq))
			if err != nil || !bytes.Equal(pt, got) {
				t.Fatal("success with unauthenticated data")
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpora under
// testdata/fuzz when ENVELOPE_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ENVELOPE_WRITE_CORPUS") != "1" {
		t.Skip("set ENVELOPE_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var scan [][]byte
	for _, s := range scanSeeds {
		if len(s) < 1000 {
			scan = append(scan, []byte(s))
		}
	}
	write("FuzzScanObject", scan)
	write("FuzzParseEnvelope", [][]byte{
		Seal(vecKey, vecID, vecNonce, seqIV(0xb0), 1, []byte(`0.2`)),
		[]byte(`"id:000102030405060708090a0b:000102030405060708090a0b:0011"`),
		[]byte(`"::::"`),
	})
	write("FuzzDecryptJSON", fuzzChunks(t))
}
