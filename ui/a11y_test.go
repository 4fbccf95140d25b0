package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// a11yPages renders every page the admin can reach, in every state the
// fixture can put it in (sign-in with and without an error, rotation
// confirmed or failed, traffic empty and with histograms).
func a11yPages(t *testing.T) map[string]string {
	t.Helper()
	f := newFixture(t, fixtureOptions{})
	out := map[string]string{}
	anon := f.client()
	out["login"] = f.do(anon, http.MethodGet, "/login", nil).body
	r := f.do(anon, http.MethodPost, "/login", url.Values{"csrf": {csrf(t, out["login"])}, "password": {"wrong password!!"}})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r.status)
	}
	out["login (wrong password)"] = r.body
	nopw := newFixture(t, fixtureOptions{noPassword: true})
	out["login (no password set)"] = nopw.do(nopw.client(), http.MethodGet, "/login", nil).body

	c := f.login(testPassword)
	paths := map[string]string{"keys (rotated)": "/admin/keys?rotated=kid-1", "keys (rotation failed)": "/admin/keys?error=disk+full"}
	for p := range pageWants {
		paths[p] = p
	}
	for name, p := range paths {
		if r := f.do(c, http.MethodGet, p, nil); r.status != http.StatusOK {
			t.Fatalf("GET %s: %d", p, r.status)
		} else {
			out[name] = r.body
		}
	}
	observeFixedTraffic(f.in)
	out["traffic (with requests)"] = f.do(c, http.MethodGet, "/admin/traffic", nil).body
	return out
}

// a11yChecks each return the problems found in one parsed page, every one
// naming the element.
var a11yChecks = []struct {
	name  string
	check func(doc *html.Node) []string
}{
	{"html lang and title", checkLangTitle},
	{"one h1, headings in order", checkHeadings},
	{"form controls have names", checkControls},
	{"buttons, links, images have names", checkNames},
	{"tables have captions and header cells", checkTables},
	{"ids unique, references resolve", checkIDs},
	{"skip link and main landmark", checkLandmarks},
	{"static parts work without JavaScript", checkNoJS},
}

func TestAccessibilityBasics(t *testing.T) {
	pages := a11yPages(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range pages {
			if !yield(n) {
				return
			}
		}
	})
	for _, page := range names {
		// Parsed as a browser without scripts parses it: <noscript>'s
		// content is markup.
		doc, err := html.ParseWithOptions(strings.NewReader(pages[page]), html.ParseOptionEnableScripting(false))
		if err != nil {
			t.Fatalf("%s: parse: %v", page, err)
		}
		for _, c := range a11yChecks {
			t.Run(page+"/"+c.name, func(t *testing.T) {
				for _, p := range c.check(doc) {
					t.Errorf("page %s: %s", page, p)
				}
			})
		}
	}
}

func checkLangTitle(doc *html.Node) []string {
	var out []string
	if h := find(doc, "html"); len(h) != 1 || strings.TrimSpace(attr(h[0], "lang")) == "" {
		out = append(out, "<html> has no lang attribute")
	}
	var ts []*html.Node // SVG <title>s are tooltips, not the page's title
	for _, h := range find(doc, "head") {
		ts = append(ts, find(h, "title")...)
	}
	if len(ts) != 1 || strings.TrimSpace(text(ts[0])) == "" {
		out = append(out, "no non-empty <title>")
	}
	return out
}

func checkHeadings(doc *html.Node) []string {
	var out []string
	if h1 := find(doc, "h1"); len(h1) != 1 {
		out = append(out, fmt.Sprintf("%d <h1> elements, want exactly one", len(h1)))
	}
	prev := 0
	walk(doc, func(n *html.Node) {
		if len(n.Data) != 2 || n.Data[0] != 'h' || n.Data[1] < '1' || n.Data[1] > '6' {
			return
		}
		level := int(n.Data[1] - '0')
		if level > prev+1 {
			out = append(out, fmt.Sprintf("%s follows h%d: a heading level is skipped", describe(n), prev))
		}
		prev = level
	})
	return out
}

func checkControls(doc *html.Node) []string {
	var out []string
	ids, labelFor := idIndex(doc), map[string]bool{}
	for _, l := range find(doc, "label") {
		if id := attr(l, "for"); id != "" {
			labelFor[id] = true
			if ids[id] == nil {
				out = append(out, fmt.Sprintf("%s points to no element", describe(l)))
			}
		}
	}
	for _, n := range find(doc, "input", "select", "textarea") {
		if n.Data == "input" && strings.EqualFold(attr(n, "type"), "hidden") {
			continue
		}
		named := strings.TrimSpace(attr(n, "aria-label")) != "" || labelFor[attr(n, "id")] && attr(n, "id") != ""
		for p := n.Parent; p != nil && !named; p = p.Parent {
			named = isElem(p, "label") && strings.TrimSpace(text(p)) != ""
		}
		if lb := attr(n, "aria-labelledby"); lb != "" && !named {
			named = true
			for _, id := range strings.Fields(lb) {
				named = named && ids[id] != nil && strings.TrimSpace(text(ids[id])) != ""
			}
		}
		if !named {
			out = append(out, fmt.Sprintf("%s has no accessible name (label, aria-label or aria-labelledby)", describe(n)))
		}
	}
	return out
}

func checkNames(doc *html.Node) []string {
	var out []string
	for _, n := range find(doc, "a", "button") {
		if strings.TrimSpace(text(n)) == "" && strings.TrimSpace(attr(n, "aria-label")) == "" {
			out = append(out, fmt.Sprintf("%s has neither text nor aria-label", describe(n)))
		}
	}
	for _, n := range find(doc, "img") {
		if _, ok := attrOK(n, "alt"); !ok {
			out = append(out, fmt.Sprintf("%s has no alt", describe(n)))
		}
	}
	walk(doc, func(n *html.Node) {
		if attr(n, "role") == "img" && strings.TrimSpace(attr(n, "aria-label")) == "" {
			out = append(out, fmt.Sprintf("%s (role=img) has no aria-label", describe(n)))
		}
	})
	return out
}

func checkTables(doc *html.Node) []string {
	var out []string
	for _, tb := range find(doc, "table") {
		caps := find(tb, "caption")
		if (len(caps) == 0 || strings.TrimSpace(text(caps[0])) == "") && attr(tb, "aria-label") == "" && attr(tb, "aria-labelledby") == "" {
			out = append(out, fmt.Sprintf("%s has no caption or aria-label", describe(tb)))
		}
		if len(find(tb, "th")) == 0 {
			out = append(out, fmt.Sprintf("%s has no header cells (<th>)", describe(tb)))
		}
		for _, th := range find(tb, "thead") {
			for _, cell := range find(th, "td") {
				out = append(out, fmt.Sprintf("%s in the <thead> of %s is not a <th>", describe(cell), describe(tb)))
			}
		}
		for _, cell := range find(tb, "th") {
			want := "row"
			if inside(cell, "thead") {
				want = "col"
			}
			if got := attr(cell, "scope"); got != want {
				out = append(out, fmt.Sprintf("%s of %s has scope=%q, want %q", describe(cell), describe(tb), got, want))
			}
		}
	}
	return out
}

func checkIDs(doc *html.Node) []string {
	var out []string
	seen := map[string]int{}
	walk(doc, func(n *html.Node) {
		if id, ok := attrOK(n, "id"); ok {
			if seen[id]++; seen[id] == 2 {
				out = append(out, fmt.Sprintf("id %q is used more than once (%s)", id, describe(n)))
			}
		}
	})
	walk(doc, func(n *html.Node) {
		for _, a := range []string{"aria-labelledby", "aria-describedby", "aria-controls"} {
			for _, id := range strings.Fields(attr(n, a)) {
				if seen[id] == 0 {
					out = append(out, fmt.Sprintf("%s: %s=%q names no element", describe(n), a, id))
				}
			}
		}
		if h := attr(n, "href"); isElem(n, "a") && strings.HasPrefix(h, "#") && seen[h[1:]] == 0 {
			out = append(out, fmt.Sprintf("%s links to a missing fragment", describe(n)))
		}
	})
	return out
}

func checkLandmarks(doc *html.Node) []string {
	mains := find(doc, "main")
	if len(mains) != 1 || attr(mains[0], "id") == "" {
		return []string{fmt.Sprintf("%d <main> landmarks with an id, want one", len(mains))}
	}
	// The skip link must be the first thing a keyboard reaches.
	var first *html.Node
	walk(doc, func(n *html.Node) {
		if first == nil && (isElem(n, "a") || isElem(n, "button") || isElem(n, "input") && attr(n, "type") != "hidden") {
			first = n
		}
	})
	if first == nil || !isElem(first, "a") || attr(first, "href") != "#"+attr(mains[0], "id") {
		return []string{fmt.Sprintf("the first focusable element is %s, not a skip link to #%s", describe(first), attr(mains[0], "id"))}
	}
	return nil
}

// checkNoJS: what only works with app.js is hidden in the markup (app.js
// reveals it), forms submit on their own, and no script is inline (the
// CSP would block it anyway).
func checkNoJS(doc *html.Node) []string {
	var out []string
	for _, b := range find(doc, "button") {
		if attr(b, "type") == "button" && !hasAttr(b, "hidden") {
			out = append(out, fmt.Sprintf("%s needs JavaScript but is shown without it", describe(b)))
		}
		if attr(b, "type") != "button" && !inside(b, "form") {
			out = append(out, fmt.Sprintf("%s submits no form", describe(b)))
		}
	}
	walk(doc, func(n *html.Node) {
		if slices.Contains(strings.Fields(attr(n, "class")), "js-only") && !hasAttr(n, "hidden") {
			out = append(out, fmt.Sprintf("%s is JavaScript-only but not hidden", describe(n)))
		}
		if hasAttr(n, "onclick") || hasAttr(n, "onload") || hasAttr(n, "style") {
			out = append(out, fmt.Sprintf("%s has an inline handler or style", describe(n)))
		}
	})
	for _, f := range find(doc, "form") {
		if attr(f, "method") != "post" || attr(f, "action") == "" {
			out = append(out, fmt.Sprintf("%s is not a plain POST form", describe(f)))
		}
	}
	for _, s := range find(doc, "script") {
		if attr(s, "src") == "" {
			out = append(out, "an inline <script>")
		}
	}
	return out
}

// --- HTML helpers

func walk(n *html.Node, fn func(*html.Node)) {
	if n.Type == html.ElementNode {
		fn(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func find(n *html.Node, tags ...string) []*html.Node {
	var out []*html.Node
	walk(n, func(e *html.Node) {
		if slices.Contains(tags, e.Data) {
			out = append(out, e)
		}
	})
	return out
}

func isElem(n *html.Node, tag string) bool { return n.Type == html.ElementNode && n.Data == tag }

func inside(n *html.Node, tag string) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if isElem(p, tag) {
			return true
		}
	}
	return false
}

func attrOK(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func attr(n *html.Node, key string) string { v, _ := attrOK(n, key); return v }

func hasAttr(n *html.Node, key string) bool { _, ok := attrOK(n, key); return ok }

func idIndex(doc *html.Node) map[string]*html.Node {
	ids := map[string]*html.Node{}
	walk(doc, func(n *html.Node) {
		if id := attr(n, "id"); id != "" && ids[id] == nil {
			ids[id] = n
		}
	})
	return ids
}

// text is the element's text as a screen reader reads it: text nodes and
// the alt of images.
func text(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		switch {
		case n.Type == html.TextNode:
			b.WriteString(n.Data)
		case isElem(n, "img"):
			b.WriteString(attr(n, "alt"))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}

// describe names an element for a failure message.
func describe(n *html.Node) string {
	if n == nil {
		return "nothing"
	}
	var b strings.Builder
	b.WriteString("<" + n.Data)
	for _, k := range []string{"id", "class", "name", "type", "href", "for"} {
		if v, ok := attrOK(n, k); ok {
			fmt.Fprintf(&b, " %s=%q", k, v)
		}
	}
	b.WriteString(">")
	if s := strings.Join(strings.Fields(text(n)), " "); s != "" {
		if r := []rune(s); len(r) > 40 {
			s = string(r[:40]) + "…"
		}
		fmt.Fprintf(&b, " %q", s)
	}
	return b.String()
}

// TestA11yChecksCatch shows each check failing on the mistake it exists
// for, and passing the same page without it, so a passing page means
// something.
func TestA11yChecksCatch(t *testing.T) {
	clean := `<!doctype html><html lang="en"><head><title>T</title></head><body><a href="#m">Skip</a><main id="m"><h1>T</h1></main></body></html>`
	with := func(body string) string { return strings.Replace(clean, "</h1>", "</h1>"+body, 1) }
	tests := []struct {
		name  string
		check func(*html.Node) []string
		page  string
		want  string
	}{
		{"no lang", checkLangTitle, strings.Replace(clean, ` lang="en"`, "", 1), "no lang attribute"},
		{"svg title is not the title", checkLangTitle, strings.Replace(clean, "<title>T</title>", "", 1) + `<svg><title>x</title></svg>`, "no non-empty <title>"},
		{"two h1", checkHeadings, with(`<h1>Again</h1>`), "2 <h1>"},
		{"skipped level", checkHeadings, with(`<h3>Deep</h3>`), `<h3> "Deep" follows h1`},
		{"unlabelled input", checkControls, with(`<input id="q" name="q">`), `<input id="q" name="q"> has no accessible name`},
		{"label for nothing", checkControls, with(`<label for="x">X</label>`), `<label for="x"> "X" points to no element`},
		{"aria-labelledby to nothing", checkControls, with(`<select aria-labelledby="gone"></select>`), `<select> has no accessible name`},
		{"empty button", checkNames, with(`<form method="post" action="/x"><button></button></form>`), `<button> has neither text`},
		{"img without alt", checkNames, with(`<img src="/x.png">`), `<img> has no alt`},
		{"table without caption", checkTables, with(`<table><tr><th scope="row">A</th><td>1</td></tr></table>`), `has no caption`},
		{"td in thead", checkTables, with(`<table aria-label="x"><thead><tr><td>A</td></tr></thead><tbody><tr><th scope="row">a</th></tr></tbody></table>`), `<td> "A" in the <thead>`},
		{"th without scope", checkTables, with(`<table aria-label="x"><thead><tr><th>A</th></tr></thead></table>`), `<th> "A" of <table> "A" has scope=""`},
		{"duplicate id", checkIDs, with(`<p id="m">dup</p>`), `id "m" is used more than once`},
		{"describedby nothing", checkIDs, with(`<p aria-describedby="gone">x</p>`), `aria-describedby="gone" names no element`},
		{"no skip link", checkLandmarks, strings.Replace(clean, `<a href="#m">Skip</a>`, `<button type="button" hidden>x</button>`, 1), "not a skip link to #m"},
		{"copy button shown", checkNoJS, with(`<button type="button" class="copy">Copy</button>`), `<button class="copy" type="button"> "Copy" needs JavaScript`},
		{"inline script", checkNoJS, with(`<script>alert(1)</script>`), "an inline <script>"},
	}
	cleanDoc, err := html.Parse(strings.NewReader(clean))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if p := tc.check(cleanDoc); len(p) > 0 {
				t.Fatalf("the clean page fails: %v", p)
			}
			doc, err := html.Parse(strings.NewReader(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tc.check(doc), "\n"); !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want a problem containing %q", got, tc.want)
			}
		})
	}
}
