package attesttest

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
	"google.golang.org/protobuf/proto"
)

func TestTDXAuthorityQuoteVerifiesWithItsRootOnly(t *testing.T) {
	now := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	a, err := NewTDXAuthority(now)
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	rd[0] = 7
	o := DefaultTDXQuoteOptions(rd)
	raw, err := a.Quote(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.RawTdxQuote(raw, &verify.Options{TrustedRoots: a.RootPool(), Now: now}); err != nil {
		t.Fatalf("own root: %v", err)
	}
	if err := verify.RawTdxQuote(raw, &verify.Options{Now: now}); err == nil {
		t.Fatal("test quote verified against the embedded Intel root")
	}
	pb, err := a.QuoteProto(o)
	if err != nil {
		t.Fatal(err)
	}
	var q tdxpb.QuoteV4
	if err := proto.Unmarshal(pb, &q); err != nil {
		t.Fatal(err)
	}
	if got := q.GetTdQuoteBody().GetReportData()[0]; got != 7 {
		t.Fatalf("report data byte %d", got)
	}
	if _, err := abi.QuoteToAbiBytes(&q); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(a.RootPEM()), "BEGIN CERTIFICATE") {
		t.Fatal("RootPEM is not PEM")
	}
}

func TestTDXAuthorityCollateralFullLibraryCheck(t *testing.T) {
	now := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	a, err := NewTDXAuthority(now)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := a.Quote(DefaultTDXQuoteOptions([64]byte{}))
	if err != nil {
		t.Fatal(err)
	}
	col, err := a.Collateral(TDXCollateralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(col) != 4 {
		t.Fatalf("%d collateral items", len(col))
	}
	g := getter(col)
	opts := func(at time.Time) *verify.Options {
		return &verify.Options{TrustedRoots: a.RootPool(), Now: at, GetCollateral: true, CheckRevocations: true, Getter: g}
	}
	if err := verify.RawTdxQuote(raw, opts(now)); err != nil {
		t.Fatalf("full check: %v", err)
	}
	if err := verify.RawTdxQuote(raw, opts(now.Add(40*24*time.Hour))); err == nil {
		t.Fatal("collateral 40 days old accepted")
	}
	revoked, err := a.Collateral(TDXCollateralOptions{RevokePCK: true})
	if err != nil {
		t.Fatal(err)
	}
	o := opts(now)
	o.Getter = getter(revoked)
	if err := verify.RawTdxQuote(raw, o); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked PCK: %v", err)
	}
}

// The sandbox backend links this package into the binary, so it must not
// register global flags (go-sev-guest's and go-tdx-guest's testing packages do).
func TestNoGlobalFlags(t *testing.T) {
	flag.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			t.Errorf("global flag -%s registered", f.Name)
		}
	})
}

type getter map[string]Response

func (g getter) Get(url string) (map[string][]string, []byte, error) {
	r, ok := g[url]
	if !ok {
		return nil, nil, &notFound{url}
	}
	return r.Header, r.Body, nil
}

type notFound struct{ url string }

func (e *notFound) Error() string { return "no collateral for " + e.url }
