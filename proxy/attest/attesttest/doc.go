// Package attesttest makes test-only TDX quotes and SEV-SNP reports, signed by
// throwaway vendor chains, with matching collateral and CRLs. Evidence from
// here passes full verification only with its own roots and never with the
// embedded Intel and AMD roots. Tests and the sandbox backend use it; nothing
// it produces is confidential.
package attesttest
