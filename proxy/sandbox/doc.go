// Package sandbox is a local, NOT confidential, Privatemode-compatible
// backend for tests, benchmarks and the demo.
//
// It speaks the server half of the Privatemode wire protocol: it answers
// /privatemode/v1/attest with test-signed TDX or SEV-SNP evidence from
// attesttest.Backend, performs the HPKE secret exchange on
// /privatemode/v1/secret, and serves the OpenAI- and Anthropic-shaped
// inference routes with field envelopes exactly as the real inference-proxy
// does, running a deterministic "model" instead of an LLM. Nothing about it
// is confidential: the evidence is signed by throwaway test roots that no
// production verifier trusts, every model id carries "sandbox", and the
// model list says NOT CONFIDENTIAL.
//
// Fault injection (Server.SetFault) and request recording
// (Server.Requests) let the attesting proxy's tests check retries, resets,
// truncation, plaintext injection and that no plaintext ever leaves it.
package sandbox
