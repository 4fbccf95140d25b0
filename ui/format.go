package ui

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// ago renders how long before now t was ("3m ago"), or "never".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + human(-d)
	}
	return human(d) + " ago"
}

// until renders how long after now t is ("in 12m"), or "not scheduled".
func until(now, t time.Time) string {
	if t.IsZero() {
		return "not scheduled"
	}
	d := t.Sub(now)
	if d < 0 {
		return human(-d) + " ago"
	}
	return "in " + human(d)
}

// human renders a duration coarsely, for people: 42s, 5m, 3h 20m, 12d.
func human(d time.Duration) string {
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m != 0 {
			return fmt.Sprintf("%dh %dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// plural renders n with noun, pluralised with "s" ("entry" → "entries").
func plural(n uint64, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d%s", n, noun)
	}
	if strings.HasSuffix(noun, "ry") {
		return fmt.Sprintf("%d%sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d%ss", n, noun)
}

// seconds renders a duration in seconds for tables (2 significant digits
// below one second).
func seconds(s float64) string {
	switch {
	case s == 0 || math.IsNaN(s):
		return "–"
	case s < 0.001:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.1f ms", s*1e3)
	default:
		return fmt.Sprintf("%.2f s", s)
	}
}
