// Package flow is the seam between the Agent Platform's session engine and
// the flows it runs: a flow sees a Session (the start request, the caller's
// metadata, and a way to send actions and wait for their answers) and ends
// with an Outcome or an error.
package flow
