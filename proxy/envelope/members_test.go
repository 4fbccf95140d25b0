package envelope

import (
	"errors"
	"testing"
)

func TestRawMember(t *testing.T) {
	got, err := RawMember([]byte(`{"stream":true, "model" : "m\u0031","messages":[{"a":1}]}`), "model", "stream", "absent")
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != `"m\u0031"` || string(got[1]) != "true" || got[2] != nil {
		t.Fatalf("got %q", got)
	}
	for _, bad := range []string{`[]`, `{"a":1,"a":2}`, `{"a":}`, `{"a":1} x`} {
		if _, err := RawMember([]byte(bad), "a"); err == nil {
			t.Errorf("%s accepted", bad)
		} else if !errors.Is(err, ErrInvalidJSON) && !errors.Is(err, ErrNotObject) && !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("%s: untyped error %v", bad, err)
		}
	}
}
