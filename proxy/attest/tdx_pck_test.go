package attest

import (
	"context"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/google/go-tdx-guest/testing/testdata"
)

func ptr[T any](v T) *T { return &v }

// sampleSGXExtension is the DER SGX extension of the real Intel PCK leaf in
// go-tdx-guest's sample quote.
func sampleSGXExtension(t testing.TB) []byte {
	t.Helper()
	ev, err := ParseTDXQuote(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	return sgxExtension(ev.PCKChain[0])
}

func measurement(res *Result, name string) Measurement {
	for _, m := range res.Measurements {
		if m.Name == name {
			return m
		}
	}
	return Measurement{}
}

func TestTDXDefaultTdAttributes(t *testing.T) {
	cases := []struct {
		name  string
		attrs [8]byte
		ref   string
		want  *Error // nil: accepted
	}{
		{name: "SEPT_VE_DISABLE only", attrs: [8]byte{0, 0, 0, 0x10}},
		{name: "PKS (sample quote)", attrs: [8]byte{0, 0, 0, 0x40}, want: ErrMeasurement},
		{name: "SEPT_VE_DISABLE and PKS", attrs: [8]byte{0, 0, 0, 0x50}, want: ErrMeasurement},
		{name: "all clear", want: ErrMeasurement},
		{name: "debug", attrs: [8]byte{1, 0, 0, 0x10}, want: ErrDebug},
		{name: "explicit ref wins", attrs: [8]byte{0, 0, 0, 0x40}, ref: "0000004000000000"},
		{name: "explicit ref zero", ref: "0000000000000000"},
		{name: "explicit ref rejects default", attrs: [8]byte{0, 0, 0, 0x10}, ref: "0000004000000000", want: ErrMeasurement},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newTDXFixture(t, func(o *attesttest.TDXQuoteOptions) { o.TdAttributes = c.attrs }, attesttest.TDXCollateralOptions{})
			f.ref.TdAttributes = c.ref
			var res Result
			err := CheckTDX(f.ev, []TDXReference{f.ref}, f.binding, &res)
			if c.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
			} else {
				checkTDXErr(t, err, c.want, "TD_ATTRIBUTES")
			}
			wantExp := c.ref
			if wantExp == "" {
				wantExp = "0000001000000000"
			}
			if m := measurement(&res, "TD_ATTRIBUTES"); m.Expected != wantExp || m.Match != (c.want == nil) {
				t.Errorf("measurement %+v", m)
			}
		})
	}
}

func TestTDXPCKReference(t *testing.T) {
	base := testAuthority(t)
	variant := func(o attesttest.TDXPCKOptions) *attesttest.TDXAuthority {
		t.Helper()
		a, err := base.WithPCK(o)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	strict := variant(attesttest.TDXPCKOptions{
		SGXType: ptr(SGXTypeScalableWithIntegrity), SMTEnabled: ptr(false), DynamicPlatform: ptr(false),
	})
	bare := variant(attesttest.TDXPCKOptions{OmitSGXType: true, OmitConfiguration: true})
	memInt := func(r *TDXReference) { r.MemoryIntegrity = true }
	noSMT := func(r *TDXReference) { r.SMTDisabled = true }
	static := func(r *TDXReference) { r.StaticPlatform = true }
	cases := []struct {
		name    string
		a       *attesttest.TDXAuthority
		ref     func(*TDXReference)
		field   string // "" = accepted
		absent  bool   // the failure says the certificate does not state it
		measure string
	}{
		{name: "memory integrity satisfied", a: strict, ref: memInt, measure: "PCK_SGX_TYPE"},
		{name: "memory integrity violated (sample Scalable)", a: base, ref: memInt, field: "PCK SGX type", measure: "PCK_SGX_TYPE"},
		{name: "memory integrity violated (Standard)", a: variant(attesttest.TDXPCKOptions{SGXType: ptr(SGXTypeStandard)}), ref: memInt, field: "PCK SGX type", measure: "PCK_SGX_TYPE"},
		{name: "memory integrity absent", a: bare, ref: memInt, field: "PCK SGX type", absent: true, measure: "PCK_SGX_TYPE"},
		{name: "SMT disabled satisfied", a: strict, ref: noSMT, measure: "PCK_SMT_ENABLED"},
		{name: "SMT disabled violated (sample)", a: base, ref: noSMT, field: "PCK SMTEnabled", measure: "PCK_SMT_ENABLED"},
		{name: "SMT disabled absent", a: bare, ref: noSMT, field: "PCK SMTEnabled", absent: true, measure: "PCK_SMT_ENABLED"},
		{name: "static platform satisfied", a: strict, ref: static, measure: "PCK_DYNAMIC_PLATFORM"},
		{name: "static platform violated (sample)", a: base, ref: static, field: "PCK DynamicPlatform", measure: "PCK_DYNAMIC_PLATFORM"},
		{name: "static platform absent", a: bare, ref: static, field: "PCK DynamicPlatform", absent: true, measure: "PCK_DYNAMIC_PLATFORM"},
		{name: "only SMT off is not static", a: variant(attesttest.TDXPCKOptions{SMTEnabled: ptr(false)}), ref: static, field: "PCK DynamicPlatform", measure: "PCK_DYNAMIC_PLATFORM"},
		{name: "all three satisfied", a: strict, ref: func(r *TDXReference) { memInt(r); noSMT(r); static(r) }},
		{name: "unconstrained, fields absent", a: bare},
		{name: "unconstrained, sample leaf", a: base},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newTDXFixtureWith(t, c.a, nil, attesttest.TDXCollateralOptions{})
			if c.ref != nil {
				c.ref(&f.ref)
			}
			var res Result
			err := CheckTDX(f.ev, []TDXReference{f.ref}, f.binding, &res)
			if c.field == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
			} else {
				checkTDXErr(t, err, ErrMeasurement, c.field)
				if got := strings.Contains(err.Error(), "does not state"); got != c.absent {
					t.Errorf("message %q: mentions absence = %v, want %v", err, got, c.absent)
				}
			}
			if c.measure != "" {
				m := measurement(&res, c.measure)
				if m.Expected == "" || m.Match != (c.field == "") {
					t.Errorf("measurement %+v", m)
				}
				if c.absent && m.Actual != "not stated" {
					t.Errorf("absent value shown as %q", m.Actual)
				}
			}
		})
	}
}

// TestTDXPCKVariantVerifies shows a rewritten leaf is a complete, valid
// chain and collateral match, so the PCK cases above fail only by policy.
func TestTDXPCKVariantVerifies(t *testing.T) {
	a, err := testAuthority(t).WithPCK(attesttest.TDXPCKOptions{SGXType: ptr(SGXTypeScalableWithIntegrity), OmitConfiguration: true})
	if err != nil {
		t.Fatal(err)
	}
	f := newTDXFixtureWith(t, a, nil, attesttest.TDXCollateralOptions{})
	var res Result
	if err := VerifyTDX(context.Background(), f.ev, f.hw, &res); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if f.ev.SGXType == nil || *f.ev.SGXType != SGXTypeScalableWithIntegrity || f.ev.SMTEnabled != nil || f.ev.DynamicPlatform != nil || f.ev.CachedKeys != nil {
		t.Fatalf("parsed %v %v %v %v", f.ev.SGXType, f.ev.SMTEnabled, f.ev.DynamicPlatform, f.ev.CachedKeys)
	}
	if f.ev.FMSPC != a.FMSPC() || f.ev.PIID == "" {
		t.Fatalf("other SGX entries lost: FMSPC %q PIID %q", f.ev.FMSPC, f.ev.PIID)
	}
}

func TestParsePCKExtensionsSample(t *testing.T) {
	p, err := parsePCKExtensions(sampleSGXExtension(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.PIID != "8c314d17d205dfafcbecbb00fc87eff7" {
		t.Errorf("PIID %q", p.PIID)
	}
	if p.SGXType == nil || *p.SGXType != SGXTypeScalable {
		t.Errorf("SGX type %v, want Scalable", p.SGXType)
	}
	if p.DynamicPlatform == nil || !*p.DynamicPlatform || p.CachedKeys == nil || *p.CachedKeys || p.SMTEnabled == nil || !*p.SMTEnabled {
		t.Errorf("configuration dynamic %v cached %v SMT %v", boolName(p.DynamicPlatform), boolName(p.CachedKeys), boolName(p.SMTEnabled))
	}
	ev, err := ParseTDXQuote(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	if ev.PIID != p.PIID || ev.SGXType == nil || *ev.SGXType != *p.SGXType || ev.SMTEnabled == nil {
		t.Errorf("evidence does not carry the parsed values: %+v", ev)
	}
}

// pckDER builds an SGX extension from {OID, value} entries.
func pckDER(t testing.TB, entries ...any) []byte {
	t.Helper()
	b, err := asn1.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type pckKV[T any] struct {
	ID  asn1.ObjectIdentifier
	Val T
}

func TestParsePCKExtensionsMalformed(t *testing.T) {
	sample := sampleSGXExtension(t)
	cfg := func(entries ...any) pckKV[[]any] { return pckKV[[]any]{oidPCKConfiguration, entries} }
	smt := pckKV[bool]{oidPCKSMTEnabled, false}
	typ := pckKV[asn1.Enumerated]{oidPCKSGXType, 2}
	unknown := pckKV[string]{asn1.ObjectIdentifier{1, 2, 3, 4}, "future"}
	bad := map[string][]byte{
		"empty":              nil,
		"not a sequence":     {0x04, 0x01, 0x00},
		"truncated":          sample[:len(sample)-5],
		"trailing data":      append(append([]byte(nil), sample...), 0),
		"entry not a pair":   pckDER(t, 5),
		"SGX type INTEGER":   pckDER(t, pckKV[int]{oidPCKSGXType, 2}),
		"SGX type negative":  pckDER(t, pckKV[asn1.Enumerated]{oidPCKSGXType, -1}),
		"SGX type twice":     pckDER(t, typ, typ),
		"PIID short":         pckDER(t, pckKV[[]byte]{oidPIID, make([]byte, 15)}),
		"config not a SEQ":   pckDER(t, pckKV[bool]{oidPCKConfiguration, true}),
		"config INTEGER":     pckDER(t, cfg(pckKV[int]{oidPCKSMTEnabled, 0})),
		"config entry bad":   pckDER(t, cfg(7)),
		"SMTEnabled twice":   pckDER(t, cfg(smt, smt)),
		"configuration dup":  pckDER(t, cfg(smt), cfg(smt)),
		"non-DER BOOLEAN 01": pckDER(t, cfg(pckKV[asn1.RawValue]{oidPCKSMTEnabled, asn1.RawValue{FullBytes: []byte{0x01, 0x01, 0x01}}})),
	}
	for name, der := range bad {
		if _, err := parsePCKExtensions(der); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	p, err := parsePCKExtensions(pckDER(t, unknown, typ, cfg(unknown, smt)))
	if err != nil {
		t.Fatalf("unknown entries: %v", err)
	}
	if p.SGXType == nil || *p.SGXType != 2 || p.SMTEnabled == nil || *p.SMTEnabled || p.DynamicPlatform != nil || p.CachedKeys != nil {
		t.Fatalf("parsed %+v", p)
	}
	if p, err := parsePCKExtensions(pckDER(t)); err != nil || p.SGXType != nil || p.SMTEnabled != nil || p.PIID != "" {
		t.Fatalf("empty SEQUENCE: %+v %v", p, err)
	}
}

// The seed corpus lives in testdata/fuzz/FuzzParsePCKExtensions.
func FuzzParsePCKExtensions(f *testing.F) {
	if ev, err := ParseTDXQuote(testdata.RawQuote); err == nil {
		f.Add(sgxExtension(ev.PCKChain[0]))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePCKExtensions(b)
		if err != nil {
			return
		}
		if p.SGXType != nil && *p.SGXType < 0 {
			t.Fatalf("accepted negative SGX type %d", *p.SGXType)
		}
		if p.PIID != "" && len(p.PIID) != 32 {
			t.Fatalf("accepted PIID %q", p.PIID)
		}
		// Whatever is accepted must be reportable and checkable.
		ev := &TDXEvidence{SGXType: p.SGXType, DynamicPlatform: p.DynamicPlatform, SMTEnabled: p.SMTEnabled}
		_ = pckMeasurements(ev)
		_ = checkPCKPlatform(ev, TDXReference{MemoryIntegrity: true, SMTDisabled: true, StaticPlatform: true})
	})
}
