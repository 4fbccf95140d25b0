// Package gateway is the GitLab AI-Gateway-compatible front end: the HTTP
// routes GitLab Rails, Workhorse and the IDEs call on a self-hosted AI
// Gateway, authenticated exactly as GitLab's own gateway does, with every
// model call made through the in-process attesting proxy (package model).
//
// Whatever model endpoint or API key GitLab names in a request, the gateway
// never calls it: the model client can only dial the proxy, which refuses to
// send anything to a backend it has not attested.
//
// Handlers return errors; the server writes them in the shape the caller
// expects (GitLab's {"detail": …}, the auth middleware's {"error": …}, an
// ndjson error event once a chat stream has started).
package gateway
