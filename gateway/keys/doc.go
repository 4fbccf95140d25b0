// Package keys keeps the gateway's self-signed JWT keys: the current signing
// key and the previous one for validation.
//
// GitLab's AI Gateway signs its own tokens (direct-access tokens of
// POST /v1/code/user_access_token, Duo Workflow tokens) with
// AIGW_SELF_SIGNED_JWT__SIGNING_KEY and keeps accepting tokens signed with
// AIGW_SELF_SIGNED_JWT__VALIDATION_KEY, the previous signing key, so tokens
// issued before a rotation stay valid until they expire. This package does
// the same for the appliance: [Open] generates an RSA signing key on first
// start and keeps it in <state_dir>/keys/keys.pem; [Store.Rotate] makes the
// signing key the validation key and generates a new signing key. Operators
// who manage keys themselves set the GitLab variables instead ([LoadEnv]);
// then nothing is generated or written and Rotate is refused.
//
// The key file holds one or two PKCS#8 "PRIVATE KEY" PEM blocks, signing
// first, each with Role, Key-Id (the RFC 7638 thumbprint) and Created
// headers. It is replaced as a whole by an atomic rename
// ([statedir.WriteFile]), so a crash leaves either the old pair or the new
// pair, never no signing key and never a half-written file.
package keys
