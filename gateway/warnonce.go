package gateway

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// maxWarnKeys bounds the values remembered as already logged: they come
// from any Duo user's requests, so an unbounded set is a memory leak an
// ordinary user can drive (one new identifier per request).
const maxWarnKeys = 256

// warnSummaryEvery spaces the summary line for values not logged once the
// set is full.
const warnSummaryEvery = time.Minute

// warnOnce remembers which client-supplied values were logged, up to
// maxWarnKeys; past that, new values are counted and summarised at most
// once per warnSummaryEvery. The zero value is ready.
type warnOnce struct {
	mu          sync.Mutex
	seen        map[string]struct{}
	notLogged   int
	lastSummary time.Time
}

// check reports whether key is new and should be logged, or else how many
// values went unlogged since the last summary when one is due now.
func (w *warnOnce) check(key string, now time.Time) (first bool, summary int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.seen[key]; ok {
		return false, 0
	}
	if len(w.seen) < maxWarnKeys {
		if w.seen == nil {
			w.seen = make(map[string]struct{})
		}
		w.seen[key] = struct{}{}
		return true, 0
	}
	w.notLogged++
	if now.Sub(w.lastSummary) < warnSummaryEvery {
		return false, 0
	}
	n := w.notLogged
	w.notLogged, w.lastSummary = 0, now
	return false, n
}

// maxLoggedValue bounds a client-supplied value in logs and errors.
const maxLoggedValue = 64

// clip shortens a client-supplied value for logs and error texts to
// maxLoggedValue bytes (on a rune boundary) and replaces control
// characters, so a request cannot write long or forged log lines.
func clip(s string) string {
	if len(s) > maxLoggedValue {
		cut := maxLoggedValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
