package ui

import (
	"net/netip"
	"testing"
	"time"
)

// TestGlobalLockoutSparesOthers: failures spread over many addresses trip
// the global limit for addresses that fail themselves, but never lock out
// an admin from a fresh address, one that signed in before, a trusted
// network or a browser with a session.
func TestGlobalLockoutSparesOthers(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := &limiter{fails: map[netip.Addr][]time.Time{}, now: func() time.Time { return now }}
	admin := netip.MustParseAddr("10.0.0.7")
	l.success(admin)
	for i := range loginFailsTotal + 10 {
		l.fail(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	attacker := netip.AddrFrom4([4]byte{192, 0, 2, 3})
	if l.retryAfter(attacker, false) == 0 {
		t.Error("an address that keeps failing is not held back by the global limit")
	}
	if l.retryAfter(attacker, true) != 0 {
		t.Error("a trusted request (allowed network or session) is held back by others' failures")
	}
	if w := l.retryAfter(netip.MustParseAddr("198.51.100.1"), false); w != 0 {
		t.Errorf("a fresh address waits %v because of others' failures", w)
	}
	l.fail(admin)
	if w := l.retryAfter(admin, false); w != 0 {
		t.Errorf("an address that signed in today waits %v after one typo", w)
	}
	for range loginFailsPerAddr {
		l.fail(admin)
	}
	if l.retryAfter(admin, true) == 0 {
		t.Error("the per-address limit no longer applies")
	}
}
