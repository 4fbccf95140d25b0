package collateral

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
)

// Export must name what a v5 quote needs: the TCB info for its FMSPC, the
// TD QE identity and both CRLs.
func TestTDXQuoteURLsV5(t *testing.T) {
	raw, err := os.ReadFile("../testdata/real/tdx/dcap-qvl-tdx_quote_outdated.dat")
	if err != nil {
		t.Fatal(err)
	}
	urls, err := TDXQuoteURLs(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=90c06f000000",
		"https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
		IntelRootCACRLURL,
	} {
		if !slices.Contains(urls, want) {
			t.Errorf("missing %s in %v", want, urls)
		}
	}
}

// Export must fetch a Turin VCEK at the Turin URL (8-byte chip ID, fmcSPL)
// plus the Turin chain and CRL.
func TestSNPReportURLsTurin(t *testing.T) {
	a, err := attesttest.NewSNPAuthority("Turin", time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := a.RawReport(attesttest.SNPReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	urls, err := SNPReportURLs(raw)
	if err != nil {
		t.Fatal(err)
	}
	chip := a.ChipID()
	want := attesttest.SNPVCEKURL("Turin", chip[:], a.TCB())
	if !strings.Contains(want, "fmcSPL=") || !slices.Contains(urls, want) {
		t.Fatalf("urls %v, want %s", urls, want)
	}
	for _, u := range SNPProductURLs("Turin") {
		if !slices.Contains(urls, u) {
			t.Fatalf("missing %s", u)
		}
	}
}
