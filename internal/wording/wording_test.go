package wording

import (
	"testing"
	"time"
)

func TestWording(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Plural(1, "problem", "problems"), "problem"},
		{Plural(0, "problem", "problems"), "problems"},
		{Plural(2, "problem", "problems"), "problems"},
		{OrDash(""), "-"},
		{OrDash("x"), "x"},
		{Duration(720 * time.Hour), "720h"},
		{Duration(90 * time.Minute), "1h30m"},
		{Duration(5 * time.Minute), "5m"},
		{Duration(1500 * time.Millisecond), "1.5s"},
		{Duration(61 * time.Second), "1m1s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
