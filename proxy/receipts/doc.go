// Package receipts keeps the per-request receipt log: one small record per
// model request (no content) that ties the SHA-256 of the encrypted bytes
// sent and received to the trust-log entry that was current when the
// request left, appended to a hash chain, covered by Ed25519-signed
// checkpoints, written asynchronously in batches to rotated files in the
// state directory, and read back, verified and exported for auditors.
package receipts
