package ui

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
)

// pageNames are the templates under templates/, one per page.
var pageNames = []string{"login", "overview", "attestation", "gitlab", "keys", "tls", "traffic"}

// parsePages builds one template set per page: the layout plus the page.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ago":     ago,
		"until":   until,
		"human":   human,
		"seconds": seconds,
		"time":    func(t time.Time) string { return fmtTime(t) },
		"short":   shortHash,
		"join":    strings.Join,
		"verdict": lastVerdict,
		"dur":     func(d time.Duration) string { return d.String() },
		"ageOf":   func(sec float64) string { return human(time.Duration(sec * float64(time.Second))) },
		"bars":    bars,
		"pct":     func(n, total uint64) string { return percent(n, total) },
		"nav":     func() []navItem { return navItems },
		"tcbOK":   func(s string) bool { return tcbOK(s) },
		"expiry": func(now, t time.Time) string {
			if t.IsZero() {
				return "unknown"
			}
			return until(now, t)
		},
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}
	out := map[string]*template.Template{}
	for _, p := range pageNames {
		t, err := template.New(p).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", p, err)
		}
		out[p] = t
	}
	return out, nil
}

// navItem is one link of the navigation.
type navItem struct{ Page, Href, Title string }

var navItems = []navItem{
	{"overview", "/admin/", "Overview"},
	{"attestation", "/admin/attestation", "Attestation"},
	{"gitlab", "/admin/gitlab", "GitLab setup"},
	{"keys", "/admin/keys", "Keys"},
	{"tls", "/admin/tls", "TLS"},
	{"traffic", "/admin/traffic", "Traffic"},
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// shortHash shortens a hex digest for tables; the full value is in the
// title attribute and the status document.
func shortHash(h string) string {
	if len(h) <= 16 {
		return h
	}
	return h[:12] + "…" + h[len(h)-4:]
}

func percent(n, total uint64) string {
	if total == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

// tcbOK reports whether a TCB status is acceptable as it is.
func tcbOK(s string) bool {
	switch strings.ToLower(s) {
	case "uptodate", "ok":
		return true
	}
	return false
}

// bar is one histogram bar, drawn as an SVG rectangle (the CSP forbids
// inline styles, not SVG attributes).
type bar struct {
	X, Y, W, H int
	Label      string
}

// bars lays out a histogram in a 100-high box, one bar per bucket.
func bars(h Histogram, bounds []float64) []bar {
	var peak uint64
	for _, c := range h.Counts {
		peak = max(peak, c)
	}
	out := make([]bar, len(h.Counts))
	for i, c := range h.Counts {
		height := 0
		if peak > 0 {
			height = int(96 * c / peak)
			if c > 0 && height < 2 {
				height = 2
			}
		}
		le := "+Inf"
		if i < len(bounds) {
			le = "≤ " + seconds(bounds[i])
		}
		out[i] = bar{X: i * 10, Y: 100 - height, W: 8, H: height, Label: fmt.Sprintf("%s: %d", le, c)}
	}
	return out
}
