package attest

import (
	"context"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
)

// BenchmarkVerifyTDXFull measures what one attestation costs us: full
// collateral (signatures verified before use), revocation, TCB evaluation
// and the reference check.
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

// BenchmarkVerifyTDXRealV4Full and BenchmarkVerifyTDXRealV5Full verify
// genuine quotes with their genuine Intel collateral (testdata/real/tdx):
// real 3-certificate PCK chains and Intel's full TCB infos. The v5 quote ends
// in a tcb verdict (Intel's TCB info covers no level for it), which still
// runs every check up to the TCB evaluation.
func BenchmarkVerifyTDXRealV4Full(b *testing.B) { benchRealTDX(b, realTDXv4, "") }

// BenchmarkVerifyTDXRealV5Full: see BenchmarkVerifyTDXRealV4Full.
func BenchmarkVerifyTDXRealV5Full(b *testing.B) { benchRealTDX(b, realTDXv5, ClassTCB) }

func benchRealTDX(b *testing.B, c realTDXCase, want Class) {
	ev, hw := c.load(b)
	b.ReportAllocs()
	for b.Loop() {
		var res Result
		if err := VerifyTDX(context.Background(), ev, hw, &res); ClassOf(err) != want {
			b.Fatal(err)
		}
	}
}
