// Package backoff is the one retry schedule of the appliance: exponential
// waits with a cap and random jitter, computed from the number of
// consecutive failures so callers can keep that count in their own state
// and tests can inject the randomness.
//
// We do not use github.com/cenkalti/backoff: its ExponentialBackOff is a
// stateful iterator that draws its own randomness, while our callers count
// failures themselves (and report them) and their tests assert exact waits
// on a fake clock with injected randomness.
package backoff

import "time"

// Policy is exponential backoff with jitter: the n-th consecutive failure
// waits min(Initial·2ⁿ⁻¹, Max), less a random fraction of up to Jitter of
// that, so many appliances do not retry in lockstep and Max stays a hard cap.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
	// Jitter is the largest fraction, in [0, 1], taken off a wait at random.
	Jitter float64
}

// WithDefaults returns p with zero fields taken from def and a negative
// Jitter (the callers' "no jitter") as 0; Jitter above 1 is clamped to 1
// and a Max below Initial is raised to Initial. Callers that must reject
// such values check them before.
func (p Policy) WithDefaults(def Policy) Policy {
	if p.Initial <= 0 {
		p.Initial = def.Initial
	}
	if p.Max <= 0 {
		p.Max = def.Max
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = def.Jitter
	case p.Jitter < 0:
		p.Jitter = 0
	}
	p.Jitter = min(max(p.Jitter, 0), 1)
	p.Max = max(p.Max, p.Initial)
	return p
}

// Delay returns the wait after the n-th consecutive failure (n ≥ 1; smaller
// n counts as 1). rnd is uniform in [0, 1): 0 means no jitter. The wait is
// never below a millisecond, so a retry loop cannot spin.
func (p Policy) Delay(n int, rnd float64) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	d -= time.Duration(float64(d) * p.Jitter * rnd)
	return max(d, time.Millisecond)
}
