package ui

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// colourPair is an element's text (or, for indicators, its outline) on
// its background. self are the selectors that style the element, most
// specific first; parents those of its ancestors, nearest first, which
// it inherits colour and shows background through from.
type colourPair struct {
	what          string
	self, parents []string
}

var (
	onPage   = []string{"body", "html"}
	onTopBar = []string{".top", "body", "html"}
)

// textPairs are the text/background pairs the pages use.
var textPairs = []colourPair{
	{"body text", onPage, nil},
	{"link", []string{"a"}, onPage},
	{"muted text", []string{".muted"}, onPage},
	{"footer", []string{"footer"}, onPage},
	{"table caption", []string{"caption"}, onPage},
	{"table header", []string{"thead th", "th"}, onPage},
	{"code", []string{"code"}, onPage},
	{"code in a muted caption", []string{".setup caption code", "code"}, append([]string{"caption"}, onPage...)},
	{"histogram caption", []string{".hist figcaption"}, onPage},
	{"skip link when focused", []string{".skip:focus", ".skip", "a"}, onPage},
	{"header bar", []string{".top"}, onPage},
	{"header muted", []string{".top .muted", ".muted"}, onTopBar},
	{"navigation link", []string{".top nav a", "a"}, onTopBar},
	{"navigation link hovered", []string{".top nav a:hover", ".top nav a", "a"}, onTopBar},
	{"current page link", []string{`.top nav a[aria-current="page"]`, ".top nav a", "a"}, onTopBar},
	{"sign-out button", []string{".top button", "button"}, onTopBar},
	{"sandbox notice", []string{".notice"}, onPage},
	{"badge", []string{".badge"}, onPage},
	{"badge ok", []string{".badge.ok", ".badge"}, onPage},
	{"badge warn", []string{".badge.warn", ".badge"}, onPage},
	{"badge bad", []string{".badge.bad", ".badge"}, onPage},
	{"callout", []string{".callout"}, onPage},
	{"callout ok", []string{".callout.ok", ".callout"}, onPage},
	{"callout warn", []string{".callout.warn", ".callout"}, onPage},
	{"callout bad", []string{".callout.bad", ".callout"}, onPage},
	{"button", []string{"button"}, onPage},
	{"button hovered", []string{"button:hover", "button"}, onPage},
	{"copy button", []string{"button.copy", "button"}, onPage},
	{"danger button", []string{"button.danger", "button"}, onPage},
}

func TestCSSContrast(t *testing.T) {
	src, err := os.ReadFile("static/app.css")
	if err != nil {
		t.Fatal(err)
	}
	css := parseCSS(string(src))
	for _, p := range textPairs {
		fg, bg, err := css.pair(p)
		if err != nil {
			t.Errorf("%s: %v", p.what, err)
			continue
		}
		r := contrast(fg, bg)
		t.Logf("%-24s %s on %s: %5.2f:1", p.what, fg, bg, r)
		if r < 4.5 {
			t.Errorf("%s: %s on %s is %.2f:1, want at least 4.5:1", p.what, fg, bg, r)
		}
	}
	// Focus indicators (WCAG 1.4.11, 3:1 against what surrounds them):
	// the amber ring alone is too light on white, so a dark inner ring
	// goes with it; one of the two must stand out on every background.
	ring := css.rules["a:focus-visible"]
	var rings []string
	for _, prop := range []string{"outline", "box-shadow"} {
		if c, err := css.colour(ring[prop]); err == nil && c != "transparent" {
			rings = append(rings, c)
		}
	}
	for _, bgSel := range [][]string{{"html"}, {"thead th"}, {".top"}, {".callout.warn"}, {".callout.bad"}, {".callout.ok"}} {
		bg, err := css.colour(css.rules[bgSel[0]]["background"])
		if err != nil {
			t.Errorf("background of %s: %v", bgSel[0], err)
			continue
		}
		best := 0.0
		for _, c := range rings {
			best = max(best, contrast(c, bg))
		}
		if best < 3 {
			t.Errorf("focus ring %v on %s (%s): best %.2f:1, want at least 3:1", rings, bgSel[0], bg, best)
		}
	}
}

// styleSheet is app.css reduced to what contrast needs: declarations per
// selector (later rules win) and the custom properties.
type styleSheet struct {
	vars  map[string]string
	rules map[string]map[string]string
}

var cssComment = regexp.MustCompile(`(?s)/\*.*?\*/`)

// parseCSS reads flat rules; at-rule blocks (@media) are skipped: they
// change layout, not colours.
func parseCSS(src string) *styleSheet {
	s := &styleSheet{vars: map[string]string{}, rules: map[string]map[string]string{}}
	src = cssComment.ReplaceAllString(src, "")
	for {
		open := strings.IndexByte(src, '{')
		if open < 0 {
			return s
		}
		sel := strings.TrimSpace(src[:open])
		if strings.HasPrefix(sel, "@") {
			depth, i := 0, open
			for ; i < len(src); i++ {
				if src[i] == '{' {
					depth++
				} else if src[i] == '}' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			src = src[min(i+1, len(src)):]
			continue
		}
		end := strings.IndexByte(src[open:], '}')
		if end < 0 {
			return s
		}
		body := src[open+1 : open+end]
		src = src[open+end+1:]
		for _, one := range strings.Split(sel, ",") {
			one = strings.Join(strings.Fields(one), " ")
			if s.rules[one] == nil {
				s.rules[one] = map[string]string{}
			}
			for _, decl := range strings.Split(body, ";") {
				k, v, ok := strings.Cut(decl, ":")
				if !ok {
					continue
				}
				k, v = strings.TrimSpace(k), strings.TrimSpace(v)
				if k == "background-color" {
					k = "background"
				}
				s.rules[one][k] = v
				if strings.HasPrefix(k, "--") {
					s.vars[k] = v
				}
			}
		}
	}
}

var colourToken = regexp.MustCompile(`#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b|var\(--[\w-]+\)|\btransparent\b`)

// colour finds the first colour in a declaration's value, resolving
// custom properties.
func (s *styleSheet) colour(v string) (string, error) {
	for range 8 {
		tok := colourToken.FindString(v)
		if tok == "" {
			return "", fmt.Errorf("no colour in %q", v)
		}
		if !strings.HasPrefix(tok, "var(") {
			return strings.ToLower(tok), nil
		}
		name := strings.TrimSuffix(strings.TrimPrefix(tok, "var("), ")")
		if v = s.vars[name]; v == "" {
			return "", fmt.Errorf("undefined %s", name)
		}
	}
	return "", fmt.Errorf("custom properties nested too deep in %q", v)
}

// pair resolves the colours of p: the first selector of self or parents
// that sets a colour gives the text colour (colour inherits); the element's
// background is its most specific one, and where that is transparent or
// unset, the nearest ancestor's.
func (s *styleSheet) pair(p colourPair) (fg, bg string, err error) {
	for _, sel := range append(slices.Clone(p.self), p.parents...) {
		if s.rules[sel] == nil {
			return "", "", fmt.Errorf("selector %q is not in app.css", sel)
		}
	}
	for _, sel := range append(slices.Clone(p.self), p.parents...) {
		if v, ok := s.rules[sel]["color"]; ok {
			if fg, err = s.colour(v); err != nil {
				return "", "", fmt.Errorf("%s color: %w", sel, err)
			}
			break
		}
	}
	chain := p.parents
	for _, sel := range p.self {
		if _, ok := s.rules[sel]["background"]; ok {
			chain = append([]string{sel}, p.parents...)
			break
		}
	}
	for _, sel := range chain {
		if v, ok := s.rules[sel]["background"]; ok {
			if bg, err = s.colour(v); err != nil {
				return "", "", fmt.Errorf("%s background: %w", sel, err)
			}
			if bg != "transparent" {
				break
			}
		}
	}
	if fg == "" || bg == "" || bg == "transparent" {
		return "", "", fmt.Errorf("no colour (%q) or background (%q) set", fg, bg)
	}
	return fg, bg, nil
}

// contrast is the WCAG 2.x contrast ratio of two #rgb/#rrggbb colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}

func luminance(hex string) float64 {
	h := strings.TrimPrefix(hex, "#")
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	var l float64
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, _ := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		c := float64(v) / 255
		if c <= 0.04045 {
			c /= 12.92
		} else {
			c = math.Pow((c+0.055)/1.055, 2.4)
		}
		l += w * c
	}
	return l
}

func TestContrastFormula(t *testing.T) {
	tests := []struct {
		a, b string
		want float64
	}{{"#000", "#fff", 21}, {"#ffffff", "#ffffff", 1}, {"#767676", "#fff", 4.54}, {"#777", "#ffffff", 4.48}}
	for _, tc := range tests {
		if got := contrast(tc.a, tc.b); math.Abs(got-tc.want) > 0.01 {
			t.Errorf("contrast(%s, %s) = %.3f, want %.2f", tc.a, tc.b, got, tc.want)
		}
	}
}
