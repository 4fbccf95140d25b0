package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkAgainstEncodingJSON asserts the scanner agrees with encoding/json on
// validity and, for objects, on each top-level key and raw value.
func checkAgainstEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	sc := getScratch()
	defer putScratch(sc)
	err := scanObject(data, sc)
	valid := json.Valid(data)
	isObj := valid && bytes.TrimLeft(data, " \t\r\n")[0] == '{'
	switch {
	case err == nil && !isObj:
		t.Fatalf("scanner accepted %q (valid=%v)", data, valid)
	case errors.Is(err, ErrNotObject) && (!valid || isObj):
		t.Fatalf("ErrNotObject for %q", data)
	case err != nil && !errors.Is(err, ErrNotObject) && valid:
		t.Fatalf("scanner rejected valid %q: %v", data, err)
	}
	if err != nil {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; dec.More(); i++ {
		n++
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if i >= len(sc.members) {
			t.Fatalf("scanner found %d members, encoding/json more", len(sc.members))
		}
		m := sc.members[i]
		if !bytes.Equal(raw, data[m.valStart:m.valEnd]) {
			t.Fatalf("member %d value %q vs %q", i, data[m.valStart:m.valEnd], raw)
		}
		if rawKey := data[m.keyStart:m.keyEnd]; utf8.Valid(rawKey) && string(m.dk) != tok.(string) {
			t.Fatalf("member %d key %q vs %q", i, m.dk, tok)
		}
	}
	if n != len(sc.members) {
		t.Fatalf("scanner found %d members, encoding/json %d", len(sc.members), n)
	}
}

var scanSeeds = []string{
	`{}`, ` {} `, `{"a":1}`, `{"a":"b","c":[1,{"d":null}],"e":{"f":true}}`, `{"a":-0.1e+5}`,
	`{"\u00e9":"\ud83d\ude00"}`, `{"\ud800":"lone"}`, `{"\ud800\u0041":1}`, `{"a\"b":"c\\"}`,
	`{"a":1,}`, `{"a" 1}`, `{"a":01}`, `{"a":1.}`, `{"a":.1}`, `{"a":1e}`, `{"a":tru}`, `{"a":"\x"}`,
	"{\"a\":\"\x01\"}", `{"a":[1,]}`, `{"a":1}}`, `{"a":1} x`, `[1]`, `"s"`, `1`, `null`, ``, ` `,
	`{"a":{"b":[}]}`, `{"a":"\u12"}`, "{\"\xff\":\"\xfe\"}", `{"a":1 , "b" : 2 }`, `{"a":-}`,
	strings.Repeat("[", 20) + strings.Repeat("]", 20), `{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	`{"a":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}`,
}

func TestScanObjectMatchesEncodingJSON(t *testing.T) {
	for _, s := range scanSeeds {
		checkAgainstEncodingJSON(t, []byte(s))
	}
}

func TestAppendUnescaped(t *testing.T) {
	for raw, want := range map[string]string{
		`a\nb`: "a\nb", `\u00e9`: "é", `\ud83d\ude00`: "😀", `\ud800`: "\ufffd", `\ud800\u0041`: "\ufffdA",
		`\ude00\ud83d`: "\ufffd\ufffd", `\/\"\\\b\f\r\t`: "/\"\\\b\f\r\t", "\xff": "\xff",
	} {
		if got := string(appendUnescaped(nil, []byte(raw))); got != want {
			t.Errorf("%q → %q want %q", raw, got, want)
		}
	}
}

func TestParseEnvelopeStrict(t *testing.T) {
	good := string(Seal(vecKey, vecID, vecNonce, [12]byte{}, 0, []byte(`1`)))
	if _, err := ParseEnvelope([]byte(good)); err != nil {
		t.Fatal(err)
	}
	inner := good[1 : len(good)-1]
	bad := []string{
		inner, `"` + inner, inner + `"`, `""`, `"a:b:c"`, `"` + inner + `:00"`,
		`"` + strings.ToUpper(inner[:0]) + strings.Replace(inner, "0a0b", "0A0B", 1) + `"`,
		`"` + strings.Replace(inner, vecID, "", 1) + `"`,
		`"` + strings.Replace(inner, ":000102", ":0102", 1) + `"`,
		`"` + inner[:len(inner)-1] + `"`, `"` + inner + `0"`, `"` + inner[:len(inner)-34] + `"`,
		`"` + strings.Replace(inner, vecID, "a b", 1) + `"`,
	}
	for _, b := range bad {
		if _, err := ParseEnvelope([]byte(b)); !errors.Is(err, ErrNotEnvelope) {
			t.Errorf("accepted %q", b)
		}
	}
}
