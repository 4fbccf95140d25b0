package jsonlimit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	small := Limits{Depth: 3, Members: 4, Elements: 5}
	for _, tc := range []struct {
		name, body string
		want       string // "" for no error, else the limit's name
	}{
		{"empty object", `{}`, ""},
		{"members at the limit", `{"a":1,"b":2,"c":{"d":4}}`, ""},
		{"members over", `{"a":1,"b":2,"c":3,"d":4,"e":5}`, "object members"},
		{"nested members count", `{"a":{"b":{"c":1}},"d":{"e":1}}`, "object members"},
		{"elements at the limit", `[1,2,[3,4]]`, ""},
		{"elements over", `[1,2,3,4,5,6]`, "array elements"},
		{"empty arrays count nothing", `[[],[],[]]`, ""},
		{"depth at the limit", `{"a":[{}]}`, ""},
		{"depth over", `{"a":[{"b":[]}]}`, "nesting depth"},
		{"structure inside strings is text", `{"a":"{[:,:,:,:,:,:]}","b":"\"{:,"}`, ""},
		{"escaped quote does not end the string", `{"a":"x\",\"b\":1,\"c\":2,\"d\":3,\"e\":4"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.body), small)
			var le *Error
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected %v", err)
			case tc.want != "" && (!errors.As(err, &le) || le.What != tc.want || !errors.Is(err, ErrLimit)):
				t.Fatalf("err %v, want %s", err, tc.want)
			}
		})
	}
}

// TestManyTinyKeys is the reported body shape: millions of one-character
// keys in one object are refused, in one pass without allocation.
func TestManyTinyKeys(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"model":"m"`)
	for i := range Default.Members + 1 {
		b.WriteString(`,"`)
		b.WriteByte('a' + byte(i%26))
		b.WriteString(`":0`)
	}
	b.WriteString("}")
	if err := Check(b.Bytes(), Limits{}); err == nil || !strings.Contains(err.Error(), "object members") {
		t.Fatalf("err %v", err)
	}
	if allocs := testing.AllocsPerRun(3, func() { _ = Check(b.Bytes(), Limits{}) }); allocs > 1 {
		t.Fatalf("%v allocations per check", allocs)
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2,{"b":"c"}]}`, `[[[[`, `"\"`, `{"a":"\u0022"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Check(b, Limits{Depth: 4, Members: 8, Elements: 8})
	})
}
