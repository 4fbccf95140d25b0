package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute, Jitter: 0.5}
	for _, tc := range []struct {
		n    int
		rnd  float64
		want time.Duration
	}{
		{0, 0, time.Second},
		{1, 0, time.Second},
		{2, 0, 2 * time.Second},
		{6, 0, 32 * time.Second},
		{7, 0, time.Minute}, // 64s capped
		{1000, 0, time.Minute},
		{1, 0.5, 750 * time.Millisecond},
		{1000, 0.5, 45 * time.Second},
		{3, 0.999, 2002 * time.Millisecond},
	} {
		if got := p.Delay(tc.n, tc.rnd); got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.n, tc.rnd, got, tc.want)
		}
	}
	if got := (Policy{Initial: time.Nanosecond, Max: time.Nanosecond}).Delay(1, 0); got != time.Millisecond {
		t.Errorf("floor: %v", got)
	}
}

func TestWithDefaults(t *testing.T) {
	def := Policy{Initial: time.Second, Max: time.Minute, Jitter: 0.2}
	for _, tc := range []struct {
		in, want Policy
	}{
		{Policy{}, def},
		{Policy{Jitter: -1}, Policy{Initial: time.Second, Max: time.Minute}},
		{Policy{Jitter: 3}, Policy{Initial: time.Second, Max: time.Minute, Jitter: 1}},
		{Policy{Initial: time.Hour}, Policy{Initial: time.Hour, Max: time.Hour, Jitter: 0.2}},
		{Policy{Initial: 2 * time.Second, Max: 3 * time.Second, Jitter: 0.7}, Policy{Initial: 2 * time.Second, Max: 3 * time.Second, Jitter: 0.7}},
	} {
		if got := tc.in.WithDefaults(def); got != tc.want {
			t.Errorf("%+v.WithDefaults = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
