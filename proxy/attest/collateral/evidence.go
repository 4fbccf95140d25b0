package collateral

import (
	"context"
	"errors"
	"fmt"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// DocURLs lists the collateral URLs an attestation document (the JSON from
// /privatemode/v1/attest) needs, including the vendor product URLs the
// evidence might already carry, so that a bundle is complete on its own.
func DocURLs(docJSON []byte) ([]string, error) {
	d, err := attest.ParseDoc(docJSON)
	if err != nil {
		return nil, fmt.Errorf("parse attestation document: %w", err)
	}
	urls := d.CollateralURLs()
	switch d.Platform {
	case attest.PlatformTDX:
		urls = append(urls, IntelRootCACRLURL)
	case attest.PlatformSNP:
		if d.SNP != nil && d.SNP.Product != "" {
			urls = append(urls, SNPProductURLs(d.SNP.Product)...)
		}
	}
	return nonEmpty(dedupe(urls), "attestation document")
}

// TDXQuoteURLs lists the Intel PCS URLs a binary TDX quote needs.
func TDXQuoteURLs(raw []byte) ([]string, error) {
	ev, err := attest.ParseTDXQuote(raw)
	if err != nil {
		return nil, fmt.Errorf("parse TDX quote: %w", err)
	}
	urls := append(attest.TDXCollateralURLs(ev), IntelRootCACRLURL)
	return nonEmpty(dedupe(urls), "TDX quote")
}

// SNPReportURLs lists the AMD KDS URLs a raw SEV-SNP report needs, always
// including the product cert_chain and CRL.
func SNPReportURLs(raw []byte) ([]string, error) {
	ev, err := attest.ParseSNPReport(raw)
	if err != nil {
		return nil, fmt.Errorf("parse SEV-SNP report: %w", err)
	}
	urls := attest.SNPCollateralURLs(ev)
	if ev.Product != "" {
		urls = append(urls, SNPProductURLs(ev.Product)...)
	}
	return nonEmpty(dedupe(urls), "SEV-SNP report")
}

func nonEmpty(urls []string, what string) ([]string, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("%s: no collateral URLs derived from the evidence", what)
	}
	return urls, nil
}

// FetchAll fetches every URL (duplicates once) from src into a new bundle.
// It tries all of them and returns every failure joined, so one export run
// shows everything that is wrong; the bundle then holds only the successes.
func FetchAll(ctx context.Context, src attest.CollateralSource, urls []string) (*Bundle, error) {
	b := New()
	var errs []error
	for _, u := range dedupe(urls) {
		it, err := src.Collateral(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := b.Put(it); err != nil {
			errs = append(errs, err)
		}
	}
	return b, errors.Join(errs...)
}
