package attest

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtestdata "github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
)

// snpRealTime is inside the validity of go-sev-guest's real Milan VCEK
// (2022-09-24 .. 2029-09-24).
var snpRealTime = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// snpNow is when the test authority is created and evidence verified.
var snpNow = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

// snpMapSource serves collateral from a map, as a bundle would.
type snpMapSource struct {
	items     map[string]attesttest.Response
	fetchedAt time.Time
}

func (s *snpMapSource) Collateral(_ context.Context, url string) (*CollateralItem, error) {
	r, ok := s.items[url]
	if !ok {
		return nil, fmt.Errorf("%s: %w", url, ErrCollateralNotFound)
	}
	return &CollateralItem{URL: url, Header: r.Header, Body: r.Body, FetchedAt: s.fetchedAt, Source: "bundle"}, nil
}

var (
	snpAuthOnce sync.Once
	snpAuth     *attesttest.SNPAuthority
	snpAuthErr  error
)

// snpAuthority shares one test authority: RSA key generation is the slow part.
func snpAuthority(t testing.TB) *attesttest.SNPAuthority {
	t.Helper()
	snpAuthOnce.Do(func() { snpAuth, snpAuthErr = attesttest.NewSNPAuthority("Milan", snpNow) })
	if snpAuthErr != nil {
		t.Fatalf("NewSNPAuthority: %v", snpAuthErr)
	}
	return snpAuth
}

func snpTestRoots(a *attesttest.SNPAuthority) *Roots {
	return &Roots{SNP: map[string]AMDChain{a.Product(): {ARK: a.ARK(), ASK: a.ASK()}}}
}

func u8(v uint8) *uint8 { return &v }

// snpFixture is one consistent set of evidence options, reference and
// binding that passes every check.
type snpFixture struct {
	opts    attesttest.SNPReportOptions
	ref     SNPReference
	binding Binding
}

func newSNPFixture(t testing.TB) *snpFixture {
	t.Helper()
	var f snpFixture
	for i := range f.opts.Measurement {
		f.opts.Measurement[i] = byte(i + 1)
	}
	f.ref = SNPReference{
		ProductName:        "Milan",
		TrustedMeasurement: hex.EncodeToString(f.opts.Measurement[:]),
		// Equal to the authority's TCB (4, 0, 22, 213), so lowering any part fails.
		MinimumTCB:   SNPTCB{BootloaderVersion: u8(4), TEEVersion: u8(0), SNPVersion: u8(22), MicrocodeVersion: u8(213)},
		GuestPolicy:  abi.SnpPolicy{SMT: true},
		PlatformInfo: abi.SnpPlatformInfo{SMTEnabled: true},
	}
	f.opts.Policy = abi.SnpPolicyToBytes(f.ref.GuestPolicy)
	f.opts.PlatformInfo = 1 // SMT enabled
	d, err := SNPIDKeyDigest(f.opts.Measurement, f.ref.GuestPolicy)
	if err != nil {
		t.Fatalf("SNPIDKeyDigest: %v", err)
	}
	f.opts.IDKeyDigest = d
	f.opts.HostData[0], f.opts.ReportData[0] = 0xaa, 0xbb
	hd, rd := f.opts.HostData, f.opts.ReportData
	f.binding = Binding{PolicyHash: &hd, ReportData: &rd}
	return &f
}

// attestation returns parsed proto evidence from the shared authority.
func (f *snpFixture) attestation(t testing.TB, withCRL bool) *SNPEvidence {
	t.Helper()
	a := snpAuthority(t)
	build := a.Attestation
	if !withCRL {
		build = a.AttestationWithoutCRL
	}
	b, err := build(f.opts)
	if err != nil {
		t.Fatalf("Attestation: %v", err)
	}
	ev, err := ParseSNPAttestationProto(b)
	if err != nil {
		t.Fatalf("ParseSNPAttestationProto: %v", err)
	}
	return ev
}

func snpTestOpts(a *attesttest.SNPAuthority) HardwareOptions {
	return HardwareOptions{Now: snpNow, Roots: snpTestRoots(a)}
}

func wantClass(t *testing.T, err error, want *Error, field string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want class %s", err, want.Class)
	}
	var e *Error
	if field != "" && (!errors.As(err, &e) || e.Field != field) {
		t.Fatalf("err = %v, want field %q", err, field)
	}
}

func snpMilanWithVCEKTable() []byte {
	table := abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(abi.VcekGUID), RawCert: sevtestdata.VcekBytes}}}
	return append(append([]byte(nil), sevtestdata.AttestationBytes...), table.Marshal()...)
}

func TestSNPRealMilanReportWithCertTable(t *testing.T) {
	ev, err := ParseSNPReport(snpMilanWithVCEKTable())
	if err != nil {
		t.Fatalf("ParseSNPReport: %v", err)
	}
	if ev.Product != "Milan" {
		t.Fatalf("Product = %q, want Milan (from the VCEK of a v2 report)", ev.Product)
	}
	var res Result
	if err := VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime, SkipCollateral: true}, &res); err != nil {
		t.Fatalf("VerifySNP: %v", err)
	}
	if res.Platform != PlatformSNP || res.Product != "Milan" || len(res.EvidenceSHA256) != 64 {
		t.Fatalf("result = %+v", res)
	}
	// The sample guest was launched with the debug policy bit: never acceptable.
	ref := SNPReference{TrustedMeasurement: hex.EncodeToString(ev.Attestation.Report.Measurement), GuestPolicy: abi.SnpPolicy{SMT: true, Debug: true}}
	wantClass(t, CheckSNP(ev, []SNPReference{ref}, Binding{}, &res), ErrDebug, "POLICY")
}

func TestSNPRealMilanReportVCEKFromCollateral(t *testing.T) {
	ev, err := ParseSNPReport(sevtestdata.AttestationBytes)
	if err != nil {
		t.Fatalf("ParseSNPReport: %v", err)
	}
	if ev.Product != "" {
		t.Fatalf("Product = %q for a bare v2 report, want empty", ev.Product)
	}
	var res Result
	wantClass(t, VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime, SkipCollateral: true}, &res), ErrCollateral, "")
	ev.Product = "Milan" // as the caller would from the reference values
	rep := ev.Attestation.Report
	url := kds.VCEKCertURL("Milan", rep.ChipId, kds.TCBVersion(rep.ReportedTcb))
	src := &snpMapSource{items: map[string]attesttest.Response{url: {Body: sevtestdata.VcekBytes}}, fetchedAt: snpRealTime}
	res = Result{}
	if err := VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime, SkipCollateral: true, Collateral: src}, &res); err != nil {
		t.Fatalf("VerifySNP: %v", err)
	}
	if len(res.Collateral) != 1 || res.Collateral[0].URL != url || res.Collateral[0].Source != "bundle" {
		t.Fatalf("Collateral = %+v", res.Collateral)
	}
	if got := SNPCollateralURLs(ev); len(got) != 3 || got[0] != url || got[2] != "https://kdsintf.amd.com/vcek/v1/Milan/crl" {
		t.Fatalf("SNPCollateralURLs = %v", got)
	}
	// Revocation needs the CRL, which neither the report nor the source has.
	res = Result{}
	wantClass(t, VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime, Collateral: src}, &res), ErrCollateral, "AMD CRL")
	if res.Verdict != VerdictRejected || res.ErrorClass != ClassCollateral {
		t.Fatalf("result not marked rejected: %+v", res)
	}
}

func TestSNPRealMilanReportTampered(t *testing.T) {
	for _, off := range []int{0x50, 0x90, 0x1A0} { // REPORT_DATA, MEASUREMENT, CHIP_ID
		raw := snpMilanWithVCEKTable()
		raw[off] ^= 1
		ev, err := ParseSNPReport(raw)
		if err != nil {
			t.Fatalf("ParseSNPReport: %v", err)
		}
		err = VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime, SkipCollateral: true}, &Result{})
		if off == 0x1A0 {
			// The VCEK names the chip: a changed CHIP_ID no longer matches it.
			wantClass(t, err, ErrCollateral, "VCEK")
			continue
		}
		wantClass(t, err, ErrSignature, "SIGNATURE")
	}
	_, err := ParseSNPReport(sevtestdata.AttestationBytes[:abi.ReportSize-1])
	wantClass(t, err, ErrMalformed, "")
}

func TestSNPRealMilanChainExpired(t *testing.T) {
	ev, err := ParseSNPReport(snpMilanWithVCEKTable())
	if err != nil {
		t.Fatal(err)
	}
	wantClass(t, VerifySNP(context.Background(), ev, HardwareOptions{Now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), SkipCollateral: true}, &Result{}), ErrChain, "VCEK")
}

func TestSNPTestSignedFull(t *testing.T) {
	a := snpAuthority(t)
	f := newSNPFixture(t)
	ev := f.attestation(t, true)
	var res Result
	if err := VerifySNP(context.Background(), ev, snpTestOpts(a), &res); err != nil {
		t.Fatalf("VerifySNP: %v", err)
	}
	if err := CheckSNP(ev, []SNPReference{f.ref}, f.binding, &res); err != nil {
		t.Fatalf("CheckSNP: %v", err)
	}
	if res.Verdict == VerdictRejected || res.Product != "Milan" {
		t.Fatalf("result = %+v", res)
	}
	for _, m := range res.Measurements {
		checked := m.Name != snpAuthorKey && m.Name != snpFamilyID && m.Name != snpImageID && m.Name != snpChipID
		if checked && (!m.Match || m.Expected == "") {
			t.Errorf("measurement %s: %+v, want matched", m.Name, m)
		}
		if m.Actual == "" {
			t.Errorf("measurement %s has no actual value", m.Name)
		}
	}
	if len(res.TCB) != 16 {
		t.Errorf("TCB has %d components, want 16", len(res.TCB))
	}
	for _, c := range res.TCB {
		if strings.HasPrefix(c.Name, "LAUNCH_TCB.") && (c.Status != "ok" || c.Minimum == "") {
			t.Errorf("TCB %+v, want ok with minimum", c)
		}
	}
	var crl bool
	for _, c := range res.Collateral {
		crl = crl || (c.Name == "AMD CRL" && c.Source == "evidence" && !c.NextUpdate.IsZero())
	}
	if !crl || len(res.Checks) < 4 {
		t.Fatalf("collateral %+v checks %+v", res.Collateral, res.Checks)
	}
}

func TestSNPTestSignedRawReportWithBundle(t *testing.T) {
	a := snpAuthority(t)
	f := newSNPFixture(t)
	raw, err := a.RawReport(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseSNPReport(raw)
	if err != nil {
		t.Fatalf("ParseSNPReport: %v", err)
	}
	ev.Attestation.CertificateChain.VcekCert = nil // force the VCEK lookup by KDS URL
	opts := snpTestOpts(a)
	opts.Collateral = &snpMapSource{items: a.Collateral(snpNow.Add(-time.Hour)), fetchedAt: snpNow.Add(-time.Hour)}
	var res Result
	if err := VerifySNP(context.Background(), ev, opts, &res); err != nil {
		t.Fatalf("VerifySNP: %v", err)
	}
	if err := CheckSNP(ev, []SNPReference{f.ref}, f.binding, &res); err != nil {
		t.Fatalf("CheckSNP: %v", err)
	}
	if len(res.Collateral) != 2 || res.Collateral[0].Source != "bundle" || res.Collateral[1].Source != "bundle" {
		t.Fatalf("Collateral = %+v", res.Collateral)
	}
}

func TestSNPTestSignedFailsWithRealRoots(t *testing.T) {
	ev := newSNPFixture(t).attestation(t, true)
	wantClass(t, VerifySNP(context.Background(), ev, HardwareOptions{Now: snpNow}, &Result{}), ErrChain, "VCEK")
}

func TestSNPVCEKForOtherTCB(t *testing.T) {
	a := snpAuthority(t)
	f := newSNPFixture(t)
	f.opts.TCB = attesttest.SNPTCB(4, 0, 23, 213)
	ev := f.attestation(t, true)
	ev.Attestation.CertificateChain.VcekCert = a.VCEK().Raw // issued for the default TCB
	wantClass(t, VerifySNP(context.Background(), ev, snpTestOpts(a), &Result{}), ErrCollateral, "VCEK")
}

func TestSNPRevocationAndFreshness(t *testing.T) {
	a := snpAuthority(t)
	f := newSNPFixture(t)
	vcek := a.VCEK()
	crl := func(at time.Time, revoked ...*x509.Certificate) map[string]attesttest.Response {
		b, err := a.CRL(at, revoked...)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]attesttest.Response{kds.CrlLinkByKey("Milan", abi.VcekReportSigner): {Body: b}}
	}
	cases := []struct {
		name    string
		items   map[string]attesttest.Response
		fetched time.Time
		maxAge  time.Duration
		want    *Error
		field   string
	}{
		{"fresh", crl(snpNow.Add(-time.Hour)), snpNow.Add(-time.Hour), 0, nil, ""},
		{"revoked VCEK", crl(snpNow.Add(-time.Hour), vcek), snpNow.Add(-time.Hour), 0, ErrRevoked, "VCEK"},
		{"revoked ASK", crl(snpNow.Add(-time.Hour), a.ASK()), snpNow.Add(-time.Hour), 0, ErrRevoked, "ASK"},
		{"past nextUpdate", crl(snpNow.Add(-8 * 24 * time.Hour)), snpNow.Add(-time.Hour), 0, ErrCollateralStale, "AMD CRL"},
		{"fetched too long ago", crl(snpNow.Add(-time.Hour)), snpNow.Add(-3 * time.Hour), 2 * time.Hour, ErrCollateralStale, "AMD CRL"},
		{"no fetch time", crl(snpNow.Add(-time.Hour)), time.Time{}, 0, ErrCollateralStale, "AMD CRL"},
		{"fetched in the future", crl(snpNow.Add(-time.Hour)), snpNow.Add(time.Hour), 0, ErrCollateral, "AMD CRL"},
		{"issued in the future", crl(snpNow.Add(time.Hour)), snpNow, 0, ErrCollateral, "AMD CRL"},
		{"missing", nil, snpNow, 0, ErrCollateral, "AMD CRL"},
		{"garbage", map[string]attesttest.Response{kds.CrlLinkByKey("Milan", abi.VcekReportSigner): {Body: []byte("junk")}}, snpNow, 0, ErrCollateral, "AMD CRL"},
	}
	ev := f.attestation(t, false)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := snpTestOpts(a)
			opts.MaxCollateralAge = tc.maxAge
			opts.Collateral = &snpMapSource{items: tc.items, fetchedAt: tc.fetched}
			var res Result
			err := VerifySNP(context.Background(), ev, opts, &res)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifySNP: %v", err)
				}
				return
			}
			wantClass(t, err, tc.want, tc.field)
			if tc.want == ErrCollateralStale && !strings.Contains(err.Error(), RefreshHint) {
				t.Errorf("stale error lacks the refresh hint: %v", err)
			}
		})
	}
}

func TestSNPNewestCRLWins(t *testing.T) {
	a := snpAuthority(t)
	ev := newSNPFixture(t).attestation(t, true) // evidence CRL issued at snpNow, nothing revoked
	b, err := a.CRL(snpNow.Add(time.Minute), a.VCEK())
	if err != nil {
		t.Fatal(err)
	}
	opts := snpTestOpts(a)
	opts.Collateral = &snpMapSource{items: map[string]attesttest.Response{kds.CrlLinkByKey("Milan", abi.VcekReportSigner): {Body: b}}, fetchedAt: snpNow}
	opts.Now = snpNow.Add(2 * time.Minute)
	wantClass(t, VerifySNP(context.Background(), ev, opts, &Result{}), ErrRevoked, "VCEK")
}

func TestSNPForgedCRL(t *testing.T) {
	other, err := attesttest.NewSNPAuthority("Milan", snpNow)
	if err != nil {
		t.Fatal(err)
	}
	a := snpAuthority(t)
	b, err := other.CRL(snpNow)
	if err != nil {
		t.Fatal(err)
	}
	ev := newSNPFixture(t).attestation(t, false)
	ev.Attestation.CertificateChain.Extras[SNPCRLExtrasKey] = b
	wantClass(t, VerifySNP(context.Background(), ev, snpTestOpts(a), &Result{}), ErrCollateral, "AMD CRL")
}

func TestSNPParallelVerify(t *testing.T) {
	a := snpAuthority(t)
	f := newSNPFixture(t)
	ev := f.attestation(t, true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res Result
			if err := VerifySNP(context.Background(), ev, snpTestOpts(a), &res); err != nil {
				t.Errorf("VerifySNP: %v", err)
			}
			if err := CheckSNP(ev, []SNPReference{f.ref}, f.binding, &res); err != nil {
				t.Errorf("CheckSNP: %v", err)
			}
		}()
	}
	wg.Wait()
}

func TestSNPNoStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	ev, perr := ParseSNPReport(sevtestdata.AttestationBytes) // the library warns "no VCEK" here
	if perr == nil {
		ev.Product = "Milan"
		_ = VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime}, &Result{})
	}
	os.Stdout = old
	w.Close()
	out, _ := io.ReadAll(r)
	if perr != nil || len(out) != 0 {
		t.Fatalf("parse err %v; stdout got %q", perr, out)
	}
}

func TestSNPParseMalformed(t *testing.T) {
	good, err := snpAuthority(t).Attestation(newSNPFixture(t).opts)
	if err != nil {
		t.Fatal(err)
	}
	badTable := append(append([]byte(nil), sevtestdata.AttestationBytes...), make([]byte, 2*abi.CertTableEntrySize)...)
	copy(badTable[abi.ReportSize:], uuid.MustParse(abi.VcekGUID).NodeID()) // non-zero GUID
	binary.LittleEndian.PutUint32(badTable[abi.ReportSize+16:], 0xFFFFFFF0)
	binary.LittleEndian.PutUint32(badTable[abi.ReportSize+20:], 0x20) // offset+length wraps
	var att spb.Attestation
	if err := proto.Unmarshal(good, &att); err != nil {
		t.Fatal(err)
	}
	att.CertificateChain.Extras["not-a-guid"] = []byte{1}
	badExtra, _ := proto.Marshal(&att)
	att.Report = nil
	noReport, _ := proto.Marshal(&att)
	for name, in := range map[string]func() error{
		"empty":           func() error { _, err := ParseSNPReport(nil); return err },
		"huge":            func() error { _, err := ParseSNPReport(make([]byte, maxSNPEvidenceSize+1)); return err },
		"wrapping table":  func() error { _, err := ParseSNPReport(badTable); return err },
		"proto garbage":   func() error { _, err := ParseSNPAttestationProto([]byte{0xff, 0xff, 0xff}); return err },
		"proto no report": func() error { _, err := ParseSNPAttestationProto(noReport); return err },
		"proto bad extra": func() error { _, err := ParseSNPAttestationProto(badExtra); return err },
		"proto huge":      func() error { _, err := ParseSNPAttestationProto(make([]byte, maxSNPEvidenceSize+1)); return err },
	} {
		if err := in(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want malformed", name, err)
		}
	}
	if err := VerifySNP(context.Background(), nil, HardwareOptions{}, &Result{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("VerifySNP(nil) = %v", err)
	}
	if err := CheckSNP(&SNPEvidence{}, nil, Binding{}, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("CheckSNP(empty) = %v", err)
	}
}
