// Package tls gives every listener of the appliance its certificate, from
// one of three sources chosen in configuration: ACME through certmagic
// (public or private CAs), a local CA persisted in the state directory for
// air-gapped sites, or the operator's own certificate files.
//
// Importers alias it (apptls) because it shares its name with crypto/tls.
package tls
