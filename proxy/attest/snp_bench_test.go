package attest

import (
	"context"
	"testing"
)

// BenchmarkVerifySNPFull is one complete SNP decision on test-signed
// evidence: parse, chain, signature, CRL and reference values.
func BenchmarkVerifySNPFull(b *testing.B) {
	a := snpAuthority(b)
	f := newSNPFixture(b)
	doc, err := a.Attestation(f.opts)
	if err != nil {
		b.Fatal(err)
	}
	opts := snpTestOpts(a)
	refs := []SNPReference{f.ref}
	b.ReportAllocs()
	for b.Loop() {
		ev, err := ParseSNPAttestationProto(doc)
		if err != nil {
			b.Fatal(err)
		}
		var res Result
		if err := VerifySNP(context.Background(), ev, opts, &res); err != nil {
			b.Fatal(err)
		}
		if err := CheckSNP(ev, refs, f.binding, &res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifySNPSignatureOnly is chain and signature without
// revocation or reference values.
func BenchmarkVerifySNPSignatureOnly(b *testing.B) {
	a := snpAuthority(b)
	ev := newSNPFixture(b).attestation(b, false)
	opts := snpTestOpts(a)
	opts.SkipCollateral = true
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifySNP(context.Background(), ev, opts, &Result{}); err != nil {
			b.Fatal(err)
		}
	}
}
