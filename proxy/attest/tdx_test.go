package attest

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// realQuoteTime is inside the validity of the sample quote's Intel PCK chain.
var realQuoteTime = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// tdxNow is the clock of every test-signed scenario.
var tdxNow = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

// tdxMapSource serves an authority's collateral as a CollateralSource.
type tdxMapSource struct {
	items   map[string]attesttest.Response
	fetched time.Time
}

func (s *tdxMapSource) Collateral(_ context.Context, url string) (*CollateralItem, error) {
	r, ok := s.items[url]
	if !ok {
		return nil, fmt.Errorf("%s: %w", url, ErrCollateralNotFound)
	}
	return &CollateralItem{URL: url, Header: r.Header, Body: r.Body, FetchedAt: s.fetched, Source: "bundle"}, nil
}

var (
	tdxAuthOnce sync.Once
	tdxAuth     *attesttest.TDXAuthority
	tdxAuthErr  error
)

func testAuthorityOrNil() (*attesttest.TDXAuthority, error) {
	tdxAuthOnce.Do(func() { tdxAuth, tdxAuthErr = attesttest.NewTDXAuthority(tdxNow) })
	return tdxAuth, tdxAuthErr
}

func testAuthority(t testing.TB) *attesttest.TDXAuthority {
	t.Helper()
	a, err := testAuthorityOrNil()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func defaultQuoteOptions() attesttest.TDXQuoteOptions {
	var rd [64]byte
	copy(rd[:], "nonce-binding")
	return attesttest.DefaultTDXQuoteOptions(rd)
}

// tdxFixture is a test-signed quote with matching references and binding.
type tdxFixture struct {
	opts    attesttest.TDXQuoteOptions
	ev      *TDXEvidence
	ref     TDXReference
	binding Binding
	hw      HardwareOptions
}

func newTDXFixture(t testing.TB, mutate func(*attesttest.TDXQuoteOptions), col attesttest.TDXCollateralOptions) *tdxFixture {
	t.Helper()
	return newTDXFixtureWith(t, testAuthority(t), mutate, col)
}

// newTDXFixtureWith builds the fixture from authority a. The quote's
// TD_ATTRIBUTES is SEPT_VE_DISABLE alone, so the reference (which does not
// pin it) passes by the default rule rather than by not checking.
func newTDXFixtureWith(t testing.TB, a *attesttest.TDXAuthority, mutate func(*attesttest.TDXQuoteOptions), col attesttest.TDXCollateralOptions) *tdxFixture {
	t.Helper()
	var rd [64]byte
	copy(rd[:], "nonce-binding")
	var policy [32]byte
	copy(policy[:], "coordinator-policy-hash")
	o := attesttest.DefaultTDXQuoteOptions(rd)
	copy(o.MrConfigID[:], policy[:])
	o.TdAttributes = [8]byte{0, 0, 0, 0x10}
	for i := range o.Rtmrs {
		o.Rtmrs[i][0] = byte(0xA0 + i)
	}
	ref := TDXReference{
		MrTd:   hex.EncodeToString(o.MrTd[:]),
		MrSeam: hex.EncodeToString(o.MrSeam[:]),
		Xfam:   hex.EncodeToString(o.Xfam[:]),
	}
	for i := range o.Rtmrs {
		ref.Rtmrs[i] = hex.EncodeToString(o.Rtmrs[i][:])
	}
	if mutate != nil {
		mutate(&o)
	}
	raw, err := a.Quote(o)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseTDXQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	items, err := a.Collateral(col)
	if err != nil {
		t.Fatal(err)
	}
	return &tdxFixture{
		opts: o, ev: ev, ref: ref,
		binding: Binding{ReportData: &rd, PolicyHash: &policy},
		hw: HardwareOptions{
			Now:        tdxNow,
			Collateral: &tdxMapSource{items: items, fetched: tdxNow.Add(-time.Hour)},
			Roots:      &Roots{TDX: a.RootPool()},
		},
	}
}

func TestTDXRealQuoteSignatureAndChain(t *testing.T) {
	ev, err := ParseTDXQuote(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	if ev.FMSPC != "50806f000000" || ev.CA != "platform" || len(ev.PCKChain) != 3 {
		t.Fatalf("FMSPC %q CA %q chain %d", ev.FMSPC, ev.CA, len(ev.PCKChain))
	}
	var res Result
	if err := VerifyTDX(context.Background(), ev, HardwareOptions{Now: realQuoteTime, SkipCollateral: true}, &res); err != nil {
		t.Fatalf("real quote: %v", err)
	}
	if res.Platform != PlatformTDX || res.Product != "50806f000000" || len(res.EvidenceSHA256) != 64 {
		t.Fatalf("result %+v", res)
	}
	want := []string{"MRTD", "MRSEAM", "MRSIGNERSEAM", "RTMR[0]", "RTMR[1]", "RTMR[2]", "RTMR[3]", "XFAM", "TD_ATTRIBUTES", "MRCONFIGID", "MROWNER", "MROWNERCONFIG", "TEE_TCB_SVN", "REPORT_DATA", "PCK_SGX_TYPE", "PCK_SMT_ENABLED", "PCK_DYNAMIC_PLATFORM"}
	if len(res.Measurements) != len(want) {
		t.Fatalf("%d measurements, want %d", len(res.Measurements), len(want))
	}
	for i, m := range res.Measurements {
		if m.Name != want[i] || m.Actual == "" {
			t.Fatalf("measurement %d = %+v, want %s", i, m, want[i])
		}
	}
	if !strings.HasPrefix(res.Measurements[0].Actual, "6363b804") {
		t.Errorf("MRTD %s", res.Measurements[0].Actual)
	}
}

func TestTDXRealQuoteTamperedBody(t *testing.T) {
	raw := append([]byte(nil), testdata.RawQuote...)
	raw[0x30+0x88] ^= 1 // first MRTD byte
	ev, err := ParseTDXQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	err = VerifyTDX(context.Background(), ev, HardwareOptions{Now: realQuoteTime, SkipCollateral: true}, &Result{})
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("got %v, want ClassSignature", err)
	}
}

func TestTDXParseMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": testdata.RawQuote[:len(testdata.RawQuote)-100],
		"header":    testdata.RawQuote[:0x30],
		"huge":      make([]byte, maxTDXQuoteSize+1),
	} {
		if _, err := ParseTDXQuote(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ClassMalformed", name, err)
		}
		if _, err := ParseTDXQuoteProto(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s proto: got %v, want ClassMalformed", name, err)
		}
	}
}

func TestTDXProtoRoundTrip(t *testing.T) {
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	pb, err := testAuthority(t).QuoteProto(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseTDXQuoteProto(pb)
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := VerifyTDX(context.Background(), ev, f.hw, &res); err != nil {
		t.Fatalf("proto quote: %v", err)
	}
	if err := CheckTDX(ev, []TDXReference{f.ref}, f.binding, &res); err != nil {
		t.Fatalf("proto quote check: %v", err)
	}
}

func TestTDXCollateralURLs(t *testing.T) {
	ev, err := ParseTDXQuote(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000",
		"https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
		"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der",
	}
	if got := TDXCollateralURLs(ev); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v", got)
	}
}

func TestTDXTestSignedFull(t *testing.T) {
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	var res Result
	if err := VerifyTDX(context.Background(), f.ev, f.hw, &res); err != nil {
		t.Fatalf("verify: %v\n%+v", err, res.Checks)
	}
	if err := CheckTDX(f.ev, []TDXReference{f.ref}, f.binding, &res); err != nil {
		t.Fatalf("check: %v", err)
	}
	if len(res.Collateral) != 4 || len(res.TCB) == 0 {
		t.Fatalf("collateral %+v tcb %+v", res.Collateral, res.TCB)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("check %+v", c)
		}
	}
	for _, m := range res.Measurements {
		if m.Expected != "" && !m.Match {
			t.Errorf("measurement %+v", m)
		}
	}
	if f.ev.TCBEvaluationDataNumber != attesttest.TDXTCBEvaluationDataNumber {
		t.Errorf("TCB evaluation data number %d", f.ev.TCBEvaluationDataNumber)
	}
	// The same quote against the embedded Intel root.
	hw := f.hw
	hw.Roots = nil
	if err := VerifyTDX(context.Background(), f.ev, hw, &Result{}); !errors.Is(err, ErrChain) {
		t.Fatalf("real roots: got %v, want ClassChain", err)
	}
}

func TestTDXFailures(t *testing.T) {
	u16 := func(v uint16) *uint16 { return &v }
	type tc struct {
		name   string
		quote  func(*attesttest.TDXQuoteOptions)
		col    attesttest.TDXCollateralOptions
		hw     func(*HardwareOptions)
		ref    func(*TDXReference)
		bind   func(*Binding)
		want   *Error
		field  string
		verify bool // the failure is VerifyTDX's, not CheckTDX's
	}
	cases := []tc{
		{name: "MRTD", quote: func(o *attesttest.TDXQuoteOptions) { o.MrTd[0] ^= 1 }, want: ErrMeasurement, field: "MRTD"},
		{name: "MRSEAM", quote: func(o *attesttest.TDXQuoteOptions) { o.MrSeam[5] ^= 1 }, want: ErrMeasurement, field: "MRSEAM"},
		{name: "XFAM", quote: func(o *attesttest.TDXQuoteOptions) { o.Xfam[1] ^= 1 }, want: ErrMeasurement, field: "XFAM"},
		{name: "MRCONFIGID", quote: func(o *attesttest.TDXQuoteOptions) { o.MrConfigID[0] ^= 1 }, want: ErrMeasurement, field: "MRCONFIGID"},
		{name: "TD_ATTRIBUTES pinned", ref: func(r *TDXReference) { r.TdAttributes = "0000000000000000" }, want: ErrMeasurement, field: "TD_ATTRIBUTES"},
		{name: "debug", quote: func(o *attesttest.TDXQuoteOptions) { o.TdAttributes[0] |= 1 }, want: ErrDebug, field: "TD_ATTRIBUTES"},
		{name: "debug allowed by ref", quote: func(o *attesttest.TDXQuoteOptions) { o.TdAttributes[0] |= 1 },
			ref: func(r *TDXReference) { r.TdAttributes = "0100004000000000" }, want: ErrDebug, field: "TD_ATTRIBUTES"},
		{name: "low TEE_TCB_SVN", ref: func(r *TDXReference) { r.MinimumTeeTcbSvn = "ff000000000000000000000000000000" }, want: ErrTCB, field: "TEE_TCB_SVN"},
		{name: "low QE SVN", ref: func(r *TDXReference) { r.MinimumQeSvn = u16(0xffff) }, want: ErrTCB, field: "QE_SVN"},
		{name: "low PCE SVN", ref: func(r *TDXReference) { r.MinimumPceSvn = u16(0xffff) }, want: ErrTCB, field: "PCE_SVN"},
		{name: "TCB evaluation number", ref: func(r *TDXReference) { r.MinTCBEvaluationDataNumber = 99 }, want: ErrTCB, field: "TCBEvaluationDataNumber"},
		{name: "PIID", ref: func(r *TDXReference) { r.AllowedPIIDs = []string{strings.Repeat("00", 16)} }, want: ErrMeasurement, field: "PIID"},
		{name: "report data", bind: func(b *Binding) { rd := *b.ReportData; rd[63] ^= 1; b.ReportData = &rd }, want: ErrReportData, field: "REPORT_DATA"},
		{name: "TCB OutOfDate", col: attesttest.TDXCollateralOptions{TCBStatus: "OutOfDate"}, want: ErrTCB, verify: true},
		{name: "stale by nextUpdate", hw: func(h *HardwareOptions) {
			h.Now = h.Now.Add(40 * 24 * time.Hour)
			h.MaxCollateralAge = 100 * 24 * time.Hour
		}, want: ErrCollateralStale, verify: true},
		{name: "stale by fetch age", hw: func(h *HardwareOptions) {
			s := h.Collateral.(*tdxMapSource)
			h.Collateral = &tdxMapSource{items: s.items, fetched: tdxNow.Add(-31 * 24 * time.Hour)}
		}, want: ErrCollateralStale, verify: true},
		{name: "revoked PCK", col: attesttest.TDXCollateralOptions{RevokePCK: true}, want: ErrRevoked, field: "PCK certificate", verify: true},
		{name: "missing collateral", hw: func(h *HardwareOptions) {
			h.Collateral = &tdxMapSource{items: map[string]attesttest.Response{}, fetched: tdxNow}
		}, want: ErrCollateral, verify: true},
		{name: "no collateral source", hw: func(h *HardwareOptions) { h.Collateral = nil }, want: ErrCollateral, verify: true},
	}
	for i := range 4 {
		cases = append(cases, tc{
			name:  fmt.Sprintf("RTMR[%d]", i),
			quote: func(o *attesttest.TDXQuoteOptions) { o.Rtmrs[i][47] ^= 1 },
			want:  ErrMeasurement, field: fmt.Sprintf("RTMR[%d]", i),
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newTDXFixture(t, c.quote, c.col)
			if c.hw != nil {
				c.hw(&f.hw)
			}
			if c.ref != nil {
				c.ref(&f.ref)
			}
			if c.bind != nil {
				c.bind(&f.binding)
			}
			var res Result
			err := VerifyTDX(context.Background(), f.ev, f.hw, &res)
			if c.verify {
				checkTDXErr(t, err, c.want, c.field)
				if res.Verdict != VerdictRejected || res.ErrorClass != c.want.Class {
					t.Errorf("result verdict %q class %q", res.Verdict, res.ErrorClass)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			checkTDXErr(t, CheckTDX(f.ev, []TDXReference{f.ref}, f.binding, &res), c.want, c.field)
		})
	}
}

func checkTDXErr(t *testing.T, err error, want *Error, field string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want class %s", err, want.Class)
	}
	var e *Error
	if errors.As(err, &e) && field != "" && e.Field != field {
		t.Errorf("field %q, want %q (%v)", e.Field, field, err)
	}
}

func TestTDXMissingCollateralWrapsNotFound(t *testing.T) {
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	f.hw.Collateral = &tdxMapSource{items: map[string]attesttest.Response{}}
	err := VerifyTDX(context.Background(), f.ev, f.hw, &Result{})
	if !errors.Is(err, ErrCollateralNotFound) {
		t.Fatalf("got %v, want it to wrap ErrCollateralNotFound", err)
	}
}

func TestTDXStaleMessageNamesItem(t *testing.T) {
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	f.hw.Collateral.(*tdxMapSource).fetched = tdxNow.Add(-40 * 24 * time.Hour)
	err := VerifyTDX(context.Background(), f.ev, f.hw, &Result{})
	msg := fmt.Sprint(err)
	if !errors.Is(err, ErrCollateralStale) || !strings.Contains(msg, "TDX TCB info for FMSPC "+f.ev.FMSPC) || !strings.Contains(msg, "720h") || !strings.Contains(msg, "collateral import") {
		t.Fatalf("message %q", msg)
	}
}

func TestTDXAnyReferenceMatches(t *testing.T) {
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	bad := f.ref
	bad.MrTd = strings.Repeat("00", 48)
	var res Result
	if err := CheckTDX(f.ev, []TDXReference{bad, f.ref}, f.binding, &res); err != nil {
		t.Fatalf("second reference should match: %v", err)
	}
	err := CheckTDX(f.ev, []TDXReference{bad, bad}, f.binding, &res)
	checkTDXErr(t, err, ErrMeasurement, "MRTD")
	if err := CheckTDX(f.ev, nil, f.binding, &Result{}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("no refs: %v", err)
	}
}

func TestTDXForgedCollateralSignature(t *testing.T) {
	// Collateral from a second authority: same URLs and shape, wrong keys.
	other, err := attesttest.NewTDXAuthority(tdxNow)
	if err != nil {
		t.Fatal(err)
	}
	items, err := other.Collateral(attesttest.TDXCollateralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	own := f.hw.Collateral.(*tdxMapSource).items
	f.hw.Collateral = &tdxMapSource{items: items, fetched: tdxNow}
	if err := VerifyTDX(context.Background(), f.ev, f.hw, &Result{}); !errors.Is(err, ErrCollateral) {
		t.Fatalf("got %v, want ClassCollateral", err)
	}
	// Only the TCB info forged: its signature is checked before any of its
	// fields is used.
	mixed := map[string]attesttest.Response{}
	for u, r := range own {
		mixed[u] = r
	}
	tcbURL := TDXCollateralURLs(f.ev)[0]
	mixed[tcbURL] = items[tcbURL]
	f.hw.Collateral = &tdxMapSource{items: mixed, fetched: tdxNow}
	var res Result
	if err := VerifyTDX(context.Background(), f.ev, f.hw, &res); !errors.Is(err, ErrCollateral) {
		t.Fatalf("forged TCB info: got %v, want ClassCollateral", err)
	}
	if last := res.Checks[len(res.Checks)-1]; last.Name != "collateral signed by Intel" || last.OK {
		t.Fatalf("forged TCB info caught by %+v, want the signature check before use", last)
	}
}

// A forged TCB info that declares the platform OutOfDate must fail as
// collateral: its level must never become a tcb verdict or a TCB row.
func TestTDXForgedTCBLevelIsCollateral(t *testing.T) {
	other, err := attesttest.NewTDXAuthority(tdxNow)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Collateral(attesttest.TDXCollateralOptions{TCBStatus: "OutOfDate"})
	if err != nil {
		t.Fatal(err)
	}
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	mixed := map[string]attesttest.Response{}
	for u, r := range f.hw.Collateral.(*tdxMapSource).items {
		mixed[u] = r
	}
	tcbURL := TDXCollateralURLs(f.ev)[0]
	mixed[tcbURL] = forged[tcbURL]
	f.hw.Collateral = &tdxMapSource{items: mixed, fetched: tdxNow}
	var res Result
	err = VerifyTDX(context.Background(), f.ev, f.hw, &res)
	if ClassOf(err) != ClassCollateral {
		t.Fatalf("forged OutOfDate level: got %v, want ClassCollateral", err)
	}
	if len(res.TCB) != 0 || res.TCBStatus != "" {
		t.Fatalf("forged level reached the TCB table: %+v %q", res.TCB, res.TCBStatus)
	}
}

func TestTDXStatusPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		policy TCBPolicy
		want   Class
		by     bool
	}{
		{"UpToDate default", "UpToDate", TCBPolicy{}, "", false},
		{"SWHardeningNeeded refused by default", "SWHardeningNeeded", TCBPolicy{}, ClassTCB, false},
		{"SWHardeningNeeded accepted", "SWHardeningNeeded", TCBPolicy{TDXAcceptStatuses: []string{"SWHardeningNeeded"}}, "", true},
		{"ConfigurationNeeded not listed", "ConfigurationNeeded", TCBPolicy{TDXAcceptStatuses: []string{"SWHardeningNeeded"}}, ClassTCB, false},
		{"OutOfDate refused by default", "OutOfDate", TCBPolicy{}, ClassTCB, false},
		{"Revoked never", "Revoked", TCBPolicy{TDXAcceptStatuses: []string{"Revoked"}}, ClassTCB, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{TCBStatus: tc.status})
			f.hw.TCBPolicy = tc.policy
			var res Result
			err := VerifyTDX(context.Background(), f.ev, f.hw, &res)
			if ClassOf(err) != tc.want {
				t.Fatalf("got %v, want class %q", err, tc.want)
			}
			if res.TCBStatus != tc.status {
				t.Fatalf("TCBStatus %q, want %q", res.TCBStatus, tc.status)
			}
			if (res.TCBAcceptedBy != "") != tc.by {
				t.Fatalf("TCBAcceptedBy %q", res.TCBAcceptedBy)
			}
		})
	}
}

func TestTDXAllowedPIID(t *testing.T) {
	f := newTDXFixture(t, nil, attesttest.TDXCollateralOptions{})
	if f.ev.PIID == "" {
		t.Fatal("sample PCK leaf has no PIID")
	}
	f.ref.AllowedPIIDs = []string{strings.ToUpper(f.ev.PIID)}
	if err := CheckTDX(f.ev, []TDXReference{f.ref}, f.binding, &Result{}); err != nil {
		t.Fatal(err)
	}
}

func TestTDXAuthorityCertsAreTestOnly(t *testing.T) {
	leaf := testAuthority(t).PCKLeaf()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: intelRootPool(), CurrentTime: tdxNow}); err == nil {
		t.Fatal("test PCK leaf verifies against the Intel root")
	}
}
