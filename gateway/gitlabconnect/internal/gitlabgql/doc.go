// Package gitlabgql is the typed GraphQL client genqlient generates from
// ../../schema.graphql and ../../operations.graphql; do not edit
// graphql_gen.go by hand (go generate ./gateway/gitlabconnect).
package gitlabgql
