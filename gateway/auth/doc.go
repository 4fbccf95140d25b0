// Package auth validates GitLab-issued and self-issued JWTs and the GitLab
// headers that must agree with them, and issues the gateway's own
// direct-access tokens (POST /v1/code/user_access_token).
//
// It reproduces the observable behaviour of GitLab's Python AI Gateway
// (ai_gateway/api/middleware, cloud_connector auth): the same 401/403 status
// codes and message strings, RS256 only, aud as string or array, header
// cross-checks of realm, instance id and global user id. It is stricter
// where GitLab's gateway is lax: iss must be a configured issuer and the
// signing key must belong to that issuer; the token's shape, size, header
// and kid are checked before any key lookup or signature work, so junk never
// costs more than a byte scan and a small JSON decode.
//
// Keys come from a [KeySource] (implemented by the jwks package, which this
// package does not import). A source that reports "not ready" turns into a
// 503 rather than a 401, so a gateway that has not fetched GitLab's JWKS yet
// does not tell GitLab its tokens are invalid.
package auth
