// Package proxy serves the OpenAI-compatible /v1 API and forwards every
// request, field-encrypted, to an attested Privatemode backend, decrypting
// its responses and streams on the way back.
//
// Nothing leaves the process in plaintext: a request is encrypted with the
// current inference secret, which exists only while the backend's
// attestation holds (see proxy/secret); without one the request is refused.
package proxy
