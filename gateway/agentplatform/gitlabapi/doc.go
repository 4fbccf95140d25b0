// Package gitlabapi calls GitLab's REST and GraphQL API through the
// session's executor (runHTTPRequest actions answered by Workhorse or the
// IDE with the user's credentials) — the service never reaches GitLab
// directly — and reads and writes the workflow records Rails keeps:
// the workflow itself, status events and persisted checkpoints.
//
// Workhorse caps a response body at 4 MiB − 4096 bytes (older builds cut it
// silently, current ones also report "response body exceeded size limit"),
// so reads ask for bounded pages and a cut body is an error, never parsed.
package gitlabapi
