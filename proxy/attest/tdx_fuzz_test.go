package attest

import (
	"testing"

	"github.com/google/go-tdx-guest/testing/testdata"
)

// The seed corpora live in testdata/fuzz/FuzzParseTDXQuote{,Proto}; the real
// sample quote is added here too so its structure is always explored.

func FuzzParseTDXQuote(f *testing.F) {
	f.Add(testdata.RawQuote)
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseTDXQuote(b)
		if err == nil && (ev.Quote == nil || len(ev.PCKChain) != 3 || ev.FMSPC == "") {
			t.Fatalf("accepted evidence is incomplete: %+v", ev)
		}
	})
}

func FuzzParseTDXQuoteProto(f *testing.F) {
	a, err := testAuthorityOrNil()
	if err == nil {
		if b, err := a.QuoteProto(defaultQuoteOptions()); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseTDXQuoteProto(b)
		if err == nil && (ev.Quote == nil || len(ev.Raw) == 0 || len(ev.PCKChain) != 3) {
			t.Fatalf("accepted evidence is incomplete: %+v", ev)
		}
	})
}
