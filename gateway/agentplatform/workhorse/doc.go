// Package workhorse plays GitLab Workhorse's part of an Agent Platform
// session: it opens ExecuteWorkflow with Rails-like metadata, executes
// runHTTPRequest actions against a GitLab (with the user's token, and
// Workhorse's 4 MiB − 4096 body cap), answers billing events, and hands
// every newCheckpoint to the caller. The CLI's `agent chat` and the tests
// use it; it is a test and demo client, not Workhorse.
package workhorse
