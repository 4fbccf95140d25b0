package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
)

// DemoCmd runs the appliance's main job — deciding whether a backend may
// receive data — on an embedded sandbox backend: test-signed TDX and
// SEV-SNP evidence, verified end to end with the sandbox's own roots.
// Nothing about it is confidential, and it says so.
type DemoCmd struct {
	JSON bool `help:"Print the verification results as JSON."`
}

const demoBanner = `================================================================
 duo-confidential DEMO — sandbox backend, NOT CONFIDENTIAL
 The evidence below is signed by throwaway test roots made in
 this process. It exercises every check the appliance runs on a
 real Privatemode backend, but proves nothing about hardware.
================================================================
`

// Run builds the sandbox backend and verifies its attestation documents.
func (c *DemoCmd) Run(g *Globals) error {
	log := g.Logger()
	log.Warn("demo mode: sandbox backend with test roots, NOT CONFIDENTIAL")
	now := time.Now()
	be, err := attesttest.NewBackend(now)
	if err != nil {
		return fmt.Errorf("create sandbox backend: %w", err)
	}
	items, err := be.Collateral()
	if err != nil {
		return fmt.Errorf("sandbox collateral: %w", err)
	}
	roots, err := attest.ParseTestRoots(be.RootsPEM())
	if err != nil {
		return fmt.Errorf("sandbox roots: %w", err)
	}
	dir, err := os.MkdirTemp("", "duo-confidential-demo-")
	if err != nil {
		return fmt.Errorf("demo state directory: %w", err)
	}
	defer os.RemoveAll(dir)
	tl, err := attest.OpenTrustLog(filepath.Join(dir, "trust-log.jsonl"))
	if err != nil {
		return err
	}
	if !c.JSON {
		fmt.Print(demoBanner)
	}
	type run struct {
		name     string
		manifest []byte
		doc      func(nonce []byte) ([]byte, error)
	}
	runs := []run{
		{"Intel TDX", be.TDXManifest, func(n []byte) ([]byte, error) { return be.TDXDoc(n, nil, nil) }},
		{"AMD SEV-SNP", be.SNPManifest, func(n []byte) ([]byte, error) { return be.SNPDoc(n, nil, nil) }},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range runs {
		v := &attest.Verifier{
			Manifest: attest.ManifestPolicy{Mode: attest.ModePinned, Pinned: r.manifest},
			Hardware: attest.HardwareOptions{
				Now:        now,
				Collateral: responseSource{items: items, fetched: now},
				Roots:      roots,
			},
			TrustLog: tl,
		}
		nonce := make([]byte, attest.NonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("nonce: %w", err)
		}
		raw, err := r.doc(nonce)
		if err != nil {
			return fmt.Errorf("%s sandbox document: %w", r.name, err)
		}
		doc, err := attest.ParseDoc(raw)
		if err != nil {
			return fmt.Errorf("%s sandbox document: %w", r.name, err)
		}
		res, verr := v.VerifyDoc(ctx, doc, nonce)
		if !c.JSON {
			fmt.Printf("\n── %s (sandbox) ──\n", r.name)
		}
		if err := printResult(os.Stdout, res, c.JSON, false, true); err != nil {
			return err
		}
		if verr != nil {
			return fmt.Errorf("%s sandbox evidence was rejected: %w", r.name, verr)
		}
	}
	entries, err := tl.Entries()
	if err != nil {
		return err
	}
	if !c.JSON {
		fmt.Printf("\nTrust log: %d entries, hash chain verified (demo log in a temporary directory, removed on exit).\n", len(entries))
		fmt.Print("\nNext: `duo-confidential attest verify --help` for real evidence, `duo-confidential config example` for configuration.\n")
	}
	return nil
}

// responseSource serves the sandbox's collateral from memory.
type responseSource struct {
	items   map[string]attesttest.Response
	fetched time.Time
}

// Collateral returns the sandbox response for url.
func (s responseSource) Collateral(_ context.Context, url string) (*attest.CollateralItem, error) {
	r, ok := s.items[url]
	if !ok {
		return nil, fmt.Errorf("sandbox has no collateral for %s: %w", url, attest.ErrCollateralNotFound)
	}
	return &attest.CollateralItem{URL: url, Header: r.Header.Clone(), Body: bytes.Clone(r.Body), FetchedAt: s.fetched, Source: "sandbox"}, nil
}
