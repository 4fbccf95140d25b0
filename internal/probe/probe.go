// Package probe shapes what unauthenticated readiness probes (/readyz,
// /monitoring/ready) say about why the appliance is not ready: what is
// missing, never the details behind it.
//
// Internal reasons are error chains ("secret exchange failed: HTTP 500:
// <upstream body>", "backend lost secret <id> …"). Anyone who can reach a
// listener can read its probe, so upstream body excerpts, secret IDs and
// URLs stay in the logs and the signed-in admin UI.
package probe

import "strings"

// wrappers are reason prefixes that only say which part is not ready; the
// text after them is kept up to its own first detail.
var wrappers = []string{
	"confidential backend not ready: ",
	"inference secret not ready: ",
}

// PublicReason reduces a readiness reason ("; "-joined parts) to each
// part's summary: the text up to its first ": " after any wrapper prefix.
func PublicReason(reason string) string {
	if reason == "" {
		return ""
	}
	parts := strings.Split(reason, "; ")
	for i, p := range parts {
		var keep strings.Builder
		for stripped := true; stripped; {
			stripped = false
			for _, w := range wrappers {
				if rest, ok := strings.CutPrefix(p, w); ok {
					keep.WriteString(w)
					p, stripped = rest, true
				}
			}
		}
		if head, _, ok := strings.Cut(p, ": "); ok {
			p = head
		}
		keep.WriteString(p)
		parts[i] = keep.String()
	}
	return strings.Join(parts, "; ")
}
