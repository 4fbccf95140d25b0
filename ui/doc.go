// Package ui is the appliance's admin face: server-rendered HTML pages
// (overview, attestation, GitLab setup, keys, TLS, live traffic), the
// documented status document GET /api/status and Prometheus GET /metrics,
// on their own fasthttp listener.
//
// It reads the appliance's state only through Sources, so it holds no
// state of its own besides sessions, and it never renders a secret: keys
// appear by id, tokens and passwords not at all. See README.md for the
// status document and the metrics.
package ui
