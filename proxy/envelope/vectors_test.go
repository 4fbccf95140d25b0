package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// Spec §4 common inputs.
var (
	vecKey   = [32]byte(bytes.Repeat([]byte{0x42}, 32))
	vecNonce = [12]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
)

const vecID = "k5u9bRVtHkXuHrdfK3cvSB3Xl5UpJ+8Q3bAhy7B/vvs="

func seqIV(first byte) (iv [12]byte) {
	for i := range iv {
		iv[i] = first + byte(i)
	}
	return iv
}

func TestSpecVectors(t *testing.T) {
	cases := []struct {
		seq uint32
		iv  [12]byte
		pt  string
		ct  string
	}{
		{0, seqIV(0xa0), `[{"role":"user","content":"hi"}]`, "f6484d604b59ab548f17ff1424f0de5b59eeb95b9fe70890089c892d1590bf1ff5608a9304b351347693ceeb40dd6bbe"},
		{1, seqIV(0xb0), `0.2`, "1ead9a90d1002612227cc6705d2dcd17e1b832"},
	}
	for _, c := range cases {
		want := `"` + vecID + ":000102030405060708090a0b:" + hex.EncodeToString(c.iv[:]) + ":" + c.ct + `"`
		got := Seal(vecKey, vecID, vecNonce, c.iv, c.seq, []byte(c.pt))
		if string(got) != want {
			t.Fatalf("seq %d:\n got %s\nwant %s", c.seq, got, want)
		}
		e, err := ParseEnvelope(got)
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != vecID || e.Nonce != vecNonce || e.IV != c.iv {
			t.Fatalf("parsed %+v", e)
		}
		pt, err := e.Open(vecKey, c.seq)
		if err != nil || string(pt) != c.pt {
			t.Fatalf("open seq %d: %q %v", c.seq, pt, err)
		}
		if _, err := e.Open(vecKey, c.seq+1); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("wrong seq opened: %v", err)
		}
	}
}

func TestOCSPVector(t *testing.T) {
	p := OCSPPolicy{AllowRevoked: true, AllowUnknown: true, RevokedNotBefore: time.Unix(1700000000, 0)}
	h := p.Header()
	if h != "rules=allow-good,allow-revoked,allow-unknown; revocation-time-not-before=1700000000" {
		t.Fatalf("header %q", h)
	}
	const want = "83c41a390ef80d5784aa31a562d90c20e19f2dfc11e018f18913277c49722369"
	if got := OCSPMAC(vecKey, h); got != want {
		t.Fatalf("mac %s", got)
	}
	if !VerifyOCSPMAC(vecKey, h, want) || VerifyOCSPMAC(vecKey, h+" ", want) {
		t.Fatal("VerifyOCSPMAC")
	}
	strict := OCSPPolicy{RevokedNotBefore: time.Unix(5, 0)}.Header()
	if strict != "rules=allow-good; revocation-time-not-before=5" {
		t.Fatalf("strict header %q", strict)
	}
	if got := (OCSPPolicy{AllowUnknown: true}).Header(); !strings.HasPrefix(got, "rules=allow-good,allow-unknown; ") {
		t.Fatalf("unknown-only header %q", got)
	}
}

func TestShardKeyVectors(t *testing.T) {
	const full = "QKxToFQ1MRRq7Cv3lYFdwK6SCGf2xm2Lb85NGe7Z+Zy8goI7wAWd/zYccoVSVljT"
	cases := []struct {
		n      int
		suffix string // "" means: no '-' part
		length int    // suffix length when only the length is pinned
	}{
		{0, "", 0}, {63, "", 0}, {64, "Q", 1}, {127, "Q", 1}, {128, "QK", 2}, {192, "QKx", 3},
		{4095, full[:63], 63}, {4096, full, 64}, {4097, full, 64},
		{(1024 + 128) * 4, full + "I", 65},
		{100_096*4 - 1, "", 64 + 773}, {100_096 * 4, "", 64 + 774},
		{1_000_000*4 + 3, "", 64 + 774 + 1757},
	}
	prefix := "" // hex(SHA-256("test-salt"))[:16], computed once
	for _, c := range cases {
		got, err := shardKey("test-salt", bytes.Repeat([]byte("a"), c.n))
		if err != nil {
			t.Fatalf("n=%d: %v", c.n, err)
		}
		if prefix == "" {
			prefix = got[:16]
		}
		if !strings.HasPrefix(got, prefix) {
			t.Fatalf("n=%d: prefix %q", c.n, got)
		}
		rest := got[16:]
		if c.length == 0 {
			if rest != "" {
				t.Fatalf("n=%d: unexpected suffix %q", c.n, rest)
			}
			continue
		}
		if len(rest) != c.length+1 || rest[0] != '-' {
			t.Fatalf("n=%d: suffix length %d", c.n, len(rest))
		}
		if c.suffix != "" && rest[1:] != c.suffix {
			t.Fatalf("n=%d: suffix %q want %q", c.n, rest[1:], c.suffix)
		}
	}
	if _, err := shardKey("test-salt", make([]byte, 1_000_000*4+4)); !errors.Is(err, ErrShardContentTooLarge) {
		t.Fatalf("1M+1 tokens: %v", err)
	}
}

func TestShardKeyFromBody(t *testing.T) {
	a128 := strings.Repeat("a", 128)
	// Each field contributes its gjson string value: strings unescaped, arrays raw.
	for _, body := range []string{
		`{"prompt":"` + a128 + `"}`,
		`{"system":"` + a128[:64] + `","messages":"` + a128[:60] + `","suffix":"aaaa"}`,
		`{"model":"m","prompt":"` + strings.Repeat(`\u0061`, 128) + `"}`,
	} {
		got, err := ShardKey("test-salt", []byte(body))
		if err != nil || !strings.HasSuffix(got, "-QK") || len(got) != 19 {
			t.Fatalf("%s: %q %v", body, got, err)
		}
	}
	var raw = `{"messages":[{"role":"user","content":"x"}],"tools":[],"n":1}`
	content := []byte(`[][{"role":"user","content":"x"}]`)
	want, _ := shardKey("s", content)
	if got, _ := ShardKey("s", []byte(raw)); got != want {
		t.Fatalf("raw arrays: %q want %q", got, want)
	}
	for raw, want := range map[string]string{`1.50`: "1.5", `-12`: "-12", `1e2`: "100", `null`: "", `true`: "true", `"a\nb"`: "a\nb"} {
		if got := string(appendGJSONString(nil, []byte(raw))); got != want {
			t.Fatalf("gjson string of %s = %q want %q", raw, got, want)
		}
	}
	if _, err := ShardKey("", []byte(`{}`)); !errors.Is(err, ErrBadCacheSalt) {
		t.Fatal("empty salt accepted")
	}
}
