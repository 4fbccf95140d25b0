//go:build !duo_production

package appliance

import (
	"fmt"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// SandboxFor returns what an appliance in sandbox mode trusts about an
// in-process sandbox reachable at endpoint: its test roots, its manifest
// and its collateral. Only the demo, tests and benchmarks call it.
func SandboxFor(sb *sandbox.Server, endpoint string) (*Sandbox, error) {
	roots, err := attest.ParseTestRoots(sb.Backend().RootsPEM())
	if err != nil {
		return nil, fmt.Errorf("sandbox roots: %w", err)
	}
	bundle, err := SandboxBundle(sb, time.Now())
	if err != nil {
		return nil, err
	}
	return &Sandbox{Endpoint: endpoint, Roots: roots, Collateral: bundle, Manifest: sb.Manifest()}, nil
}

// SandboxBundle packs the sandbox's collateral as a bundle fetched at
// fetched, as `collateral export` would for a real backend.
func SandboxBundle(sb *sandbox.Server, fetched time.Time) (*collateral.Bundle, error) {
	items, err := sb.Backend().Collateral()
	if err != nil {
		return nil, fmt.Errorf("sandbox collateral: %w", err)
	}
	bundle := collateral.New()
	for url, r := range items {
		if _, err := bundle.Put(&attest.CollateralItem{URL: url, Header: r.Header, Body: r.Body, FetchedAt: fetched}); err != nil {
			return nil, fmt.Errorf("sandbox collateral: %w", err)
		}
	}
	return bundle, nil
}
