// Package envelope encrypts and decrypts Privatemode field envelopes in JSON
// bodies, SSE chunks and multipart forms.
//
// The wire format (docs/reference/privatemode-wire.md §6) encrypts every top-level value
// that is not on a per-route plain list into a JSON string
// "ID:hex(nonce):hex(iv):hex(AES-256-GCM ct‖tag)" whose AAD is
// nonce ‖ LE32(seq). Sequence numbers follow the sorted, gjson-escaped key
// order, restart at 0 for the response and continue across SSE chunks.
//
// The package parses each body once with a hand-written scanner over the
// top-level object (no map[string]any), keeps key order and bytes outside the
// replaced values untouched, and is strict where upstream is lax: duplicate
// keys are rejected, every non-plain response value must be an envelope
// carrying our ID and nonce, and decrypted plaintext must be one JSON value.
package envelope
