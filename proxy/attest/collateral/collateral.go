// Package collateral stores, fetches and serves attestation collateral by
// vendor URL.
//
// Verifying Intel TDX or AMD SEV-SNP evidence needs responses from the
// vendors' services (Intel PCS TCB info, QE identity and CRLs; AMD KDS VCEKs,
// certificate chains and CRLs). On an air-gapped appliance they come from a
// Bundle file made on a connected machine; on a connected one from Online,
// optionally cached into the bundle by Cache. All of them implement
// attest.CollateralSource and are keyed by the exact vendor URL the verifier
// asks for, so the verifier never knows where the bytes came from.
package collateral

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Vendor hosts whose collateral we fetch; Online refuses every other host.
const (
	IntelPCSHost   = "api.trustedservices.intel.com"
	IntelCertsHost = "certificates.trustedservices.intel.com"
	AMDKDSHost     = "kdsintf.amd.com"
)

// IntelRootCACRLURL is the CRL distribution point of the Intel SGX Root CA;
// every TDX verification with revocation checks needs it.
const IntelRootCACRLURL = "https://" + IntelCertsHost + "/IntelSGXRootCA.der"

// Source names reported in attest.CollateralItem.Source.
const (
	SourceBundle = "bundle"
	SourceOnline = "online"
)

// vendorHosts is the allowlist Online enforces.
var vendorHosts = map[string]bool{IntelPCSHost: true, IntelCertsHost: true, AMDKDSHost: true}

// SNPProductURLs returns the AMD KDS certificate chain (ASK+ARK) and CRL URLs
// for a product line ("Milan", "Genoa", "Turin").
func SNPProductURLs(product string) []string {
	base := "https://" + AMDKDSHost + "/vcek/v1/" + url.PathEscape(product)
	return []string{base + "/cert_chain", base + "/crl"}
}

// keepHeader reports whether a response header is worth storing: the
// issuer-chain headers carry the signing certificates verification needs,
// Content-Type tells PEM from DER. Everything else (cookies, request IDs,
// caching hints) would only make bundles differ needlessly.
func keepHeader(canonicalKey string) bool {
	return canonicalKey == "Content-Type" || strings.HasSuffix(canonicalKey, "-Issuer-Chain")
}

// filterHeader returns the kept headers of h, canonicalised, or nil.
func filterHeader(h http.Header) http.Header {
	var out http.Header
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		if !keepHeader(ck) || len(vs) == 0 {
			continue
		}
		if out == nil {
			out = http.Header{}
		}
		out[ck] = append(out[ck], vs...)
	}
	return out
}

// copyItem returns a deep copy so that callers can never modify what a
// source holds.
func copyItem(it *attest.CollateralItem) *attest.CollateralItem {
	c := *it
	c.Header = it.Header.Clone()
	c.Body = append([]byte(nil), it.Body...)
	return &c
}

// checkURL accepts absolute https URLs with a host; bundle keys and fetch
// targets must be exactly what the verifiers ask for.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse URL %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("URL %q: want an absolute https URL without user info or fragment", raw)
	}
	return u, nil
}

// notFound builds the error every source returns for an unknown URL.
func notFound(source, rawURL string) error {
	return fmt.Errorf("%s: no collateral for %s: %w", source, rawURL, attest.ErrCollateralNotFound)
}

// dedupe returns urls without repeats, in first-seen order.
func dedupe(urls []string) []string {
	seen := make(map[string]bool, len(urls))
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		out = append(out, u)
	}
	return out
}
