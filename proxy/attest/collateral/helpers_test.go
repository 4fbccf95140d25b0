package collateral

import (
	"fmt"
	"net/http"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Real vendor URLs as the verifiers build them.
const (
	tcbURL     = "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"
	qeURL      = "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"
	pckCRLURL  = "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
	vcekURL    = "https://kdsintf.amd.com/vcek/v1/Milan/0123456789abcdef0123456789abcdef?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
	chainURL   = "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
	amdCRLURL  = "https://kdsintf.amd.com/vcek/v1/Milan/crl"
	testIssuer = "-----BEGIN%20CERTIFICATE-----%0Atest%0A-----END%20CERTIFICATE-----%0A"
)

// tcbInfoJSON is a TCB info response shaped like Intel's, with the dates
// that matter here.
func tcbInfoJSON(issue, next time.Time) []byte {
	return fmt.Appendf(nil, `{"tcbInfo":{"id":"TDX","version":3,"issueDate":%q,"nextUpdate":%q,"fmspc":"50806f000000"},"signature":"00"}`,
		issue.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339))
}

func qeIdentityJSON(issue, next time.Time) []byte {
	return fmt.Appendf(nil, `{"enclaveIdentity":{"id":"TD_QE","version":2,"issueDate":%q,"nextUpdate":%q},"signature":"00"}`,
		issue.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339))
}

func item(url string, body []byte, fetched time.Time) *attest.CollateralItem {
	return &attest.CollateralItem{URL: url, Body: body, FetchedAt: fetched.UTC().Truncate(time.Second), Source: SourceOnline}
}

func issuerHeader() http.Header {
	return http.Header{"Tcb-Info-Issuer-Chain": {testIssuer}, "Content-Type": {"application/json"}}
}
