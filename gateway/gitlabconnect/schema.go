package gitlabconnect

import _ "embed"

// Schema is the subset of GitLab's GraphQL schema this package's queries are
// generated from and checked against (schema.graphql; its header names the
// GitLab sources). Test stand-ins serve it so that a query the client
// sends is valid exactly when it is valid against this schema.
//
//go:embed schema.graphql
var Schema string
