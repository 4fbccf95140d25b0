// Package verifiertest wires an attest.Verifier to an attesttest backend for
// tests: the backend's throwaway vendor roots, its collateral served from
// memory, its manifest pinned. Only tests import it; attesttest itself
// cannot, because package attest's own tests use attesttest.
package verifiertest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
)

// backends caches one attesttest backend per instant: building one signs
// whole vendor chains, which is slow under -race, and tests only read it.
var backends struct {
	mu sync.Mutex
	m  map[int64]*attesttest.Backend
}

// Backend returns the test binary's shared attesttest backend whose
// certificates are valid at now, building it on first use.
func Backend(t testing.TB, now time.Time) *attesttest.Backend {
	t.Helper()
	backends.mu.Lock()
	defer backends.mu.Unlock()
	if b, ok := backends.m[now.UnixNano()]; ok {
		return b
	}
	b, err := attesttest.NewBackend(now)
	if err != nil {
		t.Fatalf("attesttest backend: %v", err)
	}
	if backends.m == nil {
		backends.m = map[int64]*attesttest.Backend{}
	}
	backends.m[now.UnixNano()] = b
	return b
}

// Source serves collateral responses from memory, as a bundle would.
type Source struct {
	Items   map[string]attesttest.Response
	Fetched time.Time // reported as every item's FetchedAt
}

// Collateral returns the item for url, or attest.ErrCollateralNotFound.
func (s Source) Collateral(_ context.Context, url string) (*attest.CollateralItem, error) {
	r, ok := s.Items[url]
	if !ok {
		return nil, fmt.Errorf("%s: %w", url, attest.ErrCollateralNotFound)
	}
	return &attest.CollateralItem{URL: url, Header: r.Header.Clone(), Body: bytes.Clone(r.Body), FetchedAt: s.Fetched, Source: "bundle"}, nil
}

// New returns a Verifier that checks evidence at now against b's test
// roots and b's collateral (fetched an hour before now), with the manifest
// pinned to pinned.
func New(t testing.TB, b *attesttest.Backend, pinned []byte, now time.Time) *attest.Verifier {
	t.Helper()
	items, err := b.Collateral()
	if err != nil {
		t.Fatalf("attesttest collateral: %v", err)
	}
	roots, err := attest.ParseTestRoots(b.RootsPEM())
	if err != nil {
		t.Fatalf("attesttest roots: %v", err)
	}
	return &attest.Verifier{
		Manifest: attest.ManifestPolicy{Mode: attest.ModePinned, Pinned: pinned},
		Hardware: attest.HardwareOptions{
			Now:        now,
			Collateral: Source{Items: items, Fetched: now.Add(-time.Hour)},
			Roots:      roots,
		},
	}
}
