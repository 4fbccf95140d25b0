package receipts

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// marshalled is what encoding/json makes of r without its hash: the
// format receipt lines had before appendReceiptJSON, and still must have.
func marshalled(t *testing.T, r Receipt) ([]byte, error) {
	t.Helper()
	r.Hash = ""
	return json.Marshal(&r)
}

func TestAppendReceiptJSONIsJSONMarshal(t *testing.T) {
	tr := TrustLink{Seq: 7, Hash: TrustHash("4b39a8936b177a0eafead393a85ecb5c027b2fd5aa0c1a2cd61a13e6923d69a7"), Platform: "tdx"}
	full := Receipt{Seq: 1 << 40, Time: time.Date(2026, 3, 1, 10, 0, 1, 123_000_000, time.UTC), Route: "chat",
		Feature: "code_suggestions", Workflow: "wf-1", Instance: "4529e84e-8d53-4662-a06b-5c2e44eac247",
		UserHash: "abcdEFGH_-12", Model: "gpt-oss-120b", Status: 200, Outcome: OutcomeComplete, InTokens: 10,
		OutTokens: 20, Millis: 1234, RequestSHA256: Digest([32]byte{1}), ResponseSHA256: Digest([32]byte{2}),
		SecretID: "sid", Trust: &tr, Hash: "ignored"}
	odd := func(m func(*Receipt)) Receipt { r := full; m(&r); return r }
	for name, r := range map[string]Receipt{
		"full":           full,
		"minimal":        {Route: "chat"},
		"negative":       odd(func(r *Receipt) { r.InTokens, r.OutTokens, r.Millis, r.Status = -1, -2, -3, -4 }),
		"zone":           odd(func(r *Receipt) { r.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)) }),
		"html model":     odd(func(r *Receipt) { r.Model = "a<b>&c" }),
		"quote":          odd(func(r *Receipt) { r.Model = `m"\x` }),
		"control":        odd(func(r *Receipt) { r.Model = "m\n\t\x00\x7f" }),
		"unicode":        odd(func(r *Receipt) { r.Model = "modèle\u2028\u2029" }),
		"invalid utf-8":  odd(func(r *Receipt) { r.Route = "\xff\xfe" }),
		"odd trust hash": odd(func(r *Receipt) { r.Trust = &TrustLink{Seq: -1, Hash: "<>"} }),
		"year 0":         odd(func(r *Receipt) { r.Time = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) }),
	} {
		t.Run(name, func(t *testing.T) {
			want, err := marshalled(t, r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendReceiptJSON([]byte("prefix"), &r)
			if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Fatalf("got %s (%v)\nwant prefix%s", got, err, want)
			}
		})
	}
	// A year json cannot write is an error, as it was from json.Marshal.
	r := odd(func(r *Receipt) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })
	if _, err := appendReceiptJSON(nil, &r); err == nil {
		t.Fatal("year 10000 encoded")
	}
}

// TestAppendReceiptJSONRandom compares the encoder with json.Marshal on
// receipts whose strings mix plain and escaped characters.
func TestAppendReceiptJSONRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"", "a", "Z9", "_-.:/@+=", "<", "&", `"`, `\`, "\n", "é", "\u2028", "\xff", " ", "~"}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		return b.String()
	}
	for range 2000 {
		r := Receipt{Seq: rng.Uint64(), Time: time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).UTC(), Route: str(),
			Feature: str(), Workflow: str(), Instance: str(), UserHash: str(), Model: str(), Status: rng.IntN(600),
			Outcome: str(), InTokens: rng.IntN(3) * rng.Int(), OutTokens: rng.IntN(2), Millis: rng.Int64N(3),
			RequestSHA256: str(), ResponseSHA256: str(), SecretID: str()}
		if rng.IntN(2) == 0 {
			r.Trust = &TrustLink{Seq: rng.Int(), Hash: str()}
		}
		want, err := marshalled(t, r)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := appendReceiptJSON(nil, &r); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s (%v)\nwant %s", got, err, want)
		}
	}
}

func TestLogHashUserIsHashUser(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				inst, user := "inst-"+string(rune('a'+g)), "user-"+string(rune('0'+i%10))
				if got, want := l.HashUser(inst, user), HashUser(l.UserKey(), inst, user); got != want {
					t.Errorf("HashUser(%q, %q) = %q, want %q", inst, user, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if l.HashUser("i", "") != "" {
		t.Fatal("empty user hashed")
	}
}

// countingFile counts writes.
type countingFile struct {
	File
	writes *atomic.Int64
}

func (c countingFile) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.File.Write(p)
}

// TestWriterGathersBatches: receipts that arrive within FlushDelay of each
// other go out in one write, and Close writes what is still gathering at
// once and verifiably.
func TestWriterGathersBatches(t *testing.T) {
	dir := t.TempDir()
	trust := testTrust(t)
	var writes atomic.Int64
	l := openTest(t, dir, func(o *Options) {
		o.FlushDelay = time.Hour // only a full batch or Close ends the wait
		o.BatchMax = 64
		o.Create = func(p string) (File, error) {
			f, err := osCreate(p)
			return countingFile{f, &writes}, err
		}
	})
	for i := range 64 + 10 {
		l.Record(sample(i, link(trust[0])))
	}
	// The first 64 fill a batch: the writer does not wait for the hour.
	waitFor(t, func() bool { return l.Stats().Written == 64 })
	time.Sleep(50 * time.Millisecond)
	if n := l.Stats().Written; n != 64 {
		t.Fatalf("%d written before Close; the last 10 should still gather", n)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Minute {
		t.Fatal("Close waited for the flush delay")
	}
	// Start line, the full batch, the rest and the final checkpoint: not
	// one write per receipt.
	if n := writes.Load(); n != 4 {
		t.Fatalf("%d writes for 74 receipts", n)
	}
	if r := verify(t, dir, trust); !r.OK() || r.Receipts != 74 {
		t.Fatalf("report %+v", r)
	}
}

// FuzzAppendReceiptJSON checks the hand-written encoder against
// encoding/json on arbitrary strings, numbers and times: the chain hash is
// computed over these bytes, so any difference would break verification.
func FuzzAppendReceiptJSON(f *testing.F) {
	f.Add(uint64(1), int64(1_772_000_000), int64(123_000_000), "chat", "code_suggestions", "gpt-oss-120b", "sid", 200, 10, int64(5), true)
	f.Add(uint64(0), int64(-62_135_596_800), int64(0), "", "", "", "", 0, 0, int64(0), false)
	f.Add(uint64(1<<63), int64(253_402_300_799), int64(999_999_999), "a<b>&\"\\", "\u2028\xff", "\n\t\x00", "é", -1, -2, int64(-3), true)
	f.Fuzz(func(t *testing.T, seq uint64, sec, nsec int64, route, feature, model, secret string, status, tokens int, millis int64, trust bool) {
		r := Receipt{Seq: seq, Time: time.Unix(sec, nsec).UTC(), Route: route, Feature: feature, Workflow: secret,
			Instance: model, UserHash: feature, Model: model, Status: status, Outcome: route, InTokens: tokens,
			OutTokens: -tokens, Millis: millis, RequestSHA256: secret, ResponseSHA256: route, SecretID: secret}
		if trust {
			r.Trust = &TrustLink{Seq: tokens, Hash: TrustHash(model), Platform: feature}
		}
		want, wantErr := marshalled(t, r)
		got, err := appendReceiptJSON(nil, &r)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, encoding/json's %v", err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}
