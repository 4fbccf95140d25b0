package bearer

import "testing"

func TestAllow(t *testing.T) {
	tok, err := ParseDigests([]string{Digest("good-token"), " " + Digest("second") + " "})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Enabled() {
		t.Fatal("two digests configured but Enabled is false")
	}
	for _, tt := range []struct {
		header string
		want   bool
	}{
		{"Bearer good-token", true},
		{"bearer second", true},
		{"BEARER good-token ", true},
		{"Bearer wrong", false},
		{"Bearer ", false},
		{"Basic good-token", false},
		{"good-token", false},
		{"", false},
	} {
		if got := tok.Allow([]byte(tt.header)); got != tt.want {
			t.Errorf("Allow(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestParseDigests(t *testing.T) {
	if tok, err := ParseDigests(nil); err != nil || tok.Enabled() {
		t.Fatalf("no digests: got enabled=%v err=%v, want off and no error", tok.Enabled(), err)
	}
	var nilTokens *Tokens
	if nilTokens.Enabled() {
		t.Fatal("nil Tokens reports enabled")
	}
	for _, bad := range []string{"zz", Digest("x")[:62], Digest("x") + "00"} {
		if _, err := ParseDigests([]string{bad}); err == nil {
			t.Errorf("ParseDigests(%q) accepted a malformed digest", bad)
		}
	}
}
