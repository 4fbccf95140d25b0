package attest

import (
	"context"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
)

// BenchmarkVerifyTDXFull measures what one attestation costs us: full
// collateral, revocation (ours and the library's) and the reference check.
func BenchmarkVerifyTDXFull(b *testing.B) {
	f := newTDXFixture(b, nil, attesttest.TDXCollateralOptions{})
	refs := []TDXReference{f.ref}
	b.ReportAllocs()
	for b.Loop() {
		var res Result
		if err := VerifyTDX(context.Background(), f.ev, f.hw, &res); err != nil {
			b.Fatal(err)
		}
		if err := CheckTDX(f.ev, refs, f.binding, &res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyTDXSignatureOnly measures chain and quote signature alone.
func BenchmarkVerifyTDXSignatureOnly(b *testing.B) {
	f := newTDXFixture(b, nil, attesttest.TDXCollateralOptions{})
	f.hw.SkipCollateral = true
	b.ReportAllocs()
	for b.Loop() {
		var res Result
		if err := VerifyTDX(context.Background(), f.ev, f.hw, &res); err != nil {
			b.Fatal(err)
		}
	}
}
