// Package attest decides whether a Privatemode backend may receive our data:
// it parses the Contrast Coordinator's attestation document, verifies its
// Intel TDX or AMD SEV-SNP evidence against the vendor roots and collateral,
// checks the measurements against the trusted manifest's reference values and
// the report-data binding to our nonce and the coordinator CAs, and records
// every accepted manifest in a hash-chained trust log.
//
// Everything here fails closed: any error means "do not send".
package attest
