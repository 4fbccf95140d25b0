package attest

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Genuine TDX evidence published by other projects; see
// testdata/real/tdx/README.md for each file's source and commit.
const realTDXDir = "testdata/real/tdx"

func readReal(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qvlCollateral is the collateral JSON layout of Phala-Network/dcap-qvl's
// samples (QuoteCollateralV3): the signed TCB info and QE identity as the
// exact signed strings with their hex signatures, issuer chains as PEM and
// the CRLs as hex DER.
type qvlCollateral struct {
	PckCrlIssuerChain     string `json:"pck_crl_issuer_chain"`
	RootCaCrl             string `json:"root_ca_crl"`
	PckCrl                string `json:"pck_crl"`
	TcbInfoIssuerChain    string `json:"tcb_info_issuer_chain"`
	TcbInfo               string `json:"tcb_info"`
	TcbInfoSignature      string `json:"tcb_info_signature"`
	QeIdentityIssuerChain string `json:"qe_identity_issuer_chain"`
	QeIdentity            string `json:"qe_identity"`
	QeIdentitySignature   string `json:"qe_identity_signature"`
}

// realSource serves collateral items by URL.
type realSource map[string]*CollateralItem

func (s realSource) Collateral(_ context.Context, u string) (*CollateralItem, error) {
	it, ok := s[u]
	if !ok {
		return nil, fmt.Errorf("%s: %w", u, ErrCollateralNotFound)
	}
	c := *it
	return &c, nil
}

// qvlToSource re-frames dcap-qvl collateral as the Intel PCS responses it
// was taken from: {"tcbInfo":<signed bytes>,"signature":…} with the issuer
// chain URL-escaped in its header, and the CRLs as DER. The signed bytes
// are untouched, so Intel's signatures still decide.
func qvlToSource(t testing.TB, ev *TDXEvidence, raw []byte, fetched time.Time) realSource {
	t.Helper()
	var c qvlCollateral
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	urls := TDXCollateralURLs(ev)
	item := func(u string, h http.Header, body []byte) *CollateralItem {
		return &CollateralItem{URL: u, Header: h, Body: body, FetchedAt: fetched, Source: "bundle"}
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return realSource{
		urls[0]: item(urls[0], http.Header{tcbInfoChainHeader: {url.QueryEscape(c.TcbInfoIssuerChain)}},
			[]byte(`{"tcbInfo":`+c.TcbInfo+`,"signature":"`+c.TcbInfoSignature+`"}`)),
		urls[1]: item(urls[1], http.Header{qeIDChainHeader: {url.QueryEscape(c.QeIdentityIssuerChain)}},
			[]byte(`{"enclaveIdentity":`+c.QeIdentity+`,"signature":"`+c.QeIdentitySignature+`"}`)),
		urls[2]: item(urls[2], http.Header{"Sgx-Pck-Crl-Issuer-Chain": {url.QueryEscape(c.PckCrlIssuerChain)}}, unhex(c.PckCrl)),
		urls[3]: item(urls[3], nil, unhex(c.RootCaCrl)),
	}
}

type realTDXCase struct {
	quote, collateral string
	now               time.Time
}

var (
	// dcap-qvl's v4 sample: FMSPC B0C06F000000 (upper case in Intel's TCB
	// info), collateral issued 2025-06-19, next update 2025-07-19.
	realTDXv4 = realTDXCase{"dcap-qvl-tdx_quote.dat", "dcap-qvl-tdx_quote_collateral.json", time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)}
	// dcap-qvl's v5 (TD 1.5 body) sample: FMSPC 90C06F000000, collateral
	// issued 2026-02-18, next update 2026-03-20.
	realTDXv5 = realTDXCase{"dcap-qvl-tdx_quote_outdated.dat", "dcap-qvl-tdx_quote_outdated_collateral.json", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
)

func (c realTDXCase) load(t testing.TB) (*TDXEvidence, HardwareOptions) {
	t.Helper()
	ev, err := ParseTDXQuote(readReal(t, realTDXDir, c.quote))
	if err != nil {
		t.Fatal(err)
	}
	src := qvlToSource(t, ev, readReal(t, realTDXDir, c.collateral), c.now.Add(-24*time.Hour))
	return ev, HardwareOptions{Now: c.now, Collateral: src}
}

func tcbRow(res *Result, name string) *TCBComponent {
	for i := range res.TCB {
		if res.TCB[i].Name == name {
			return &res.TCB[i]
		}
	}
	return nil
}

func TestRealTDXv4UpToDate(t *testing.T) {
	ev, hw := realTDXv4.load(t)
	if ev.Version != 4 || ev.BodyType != 0 {
		t.Fatalf("version %d body %d", ev.Version, ev.BodyType)
	}
	var res Result
	if err := VerifyTDX(context.Background(), ev, hw, &res); err != nil {
		t.Fatalf("genuine v4 quote with its Intel collateral: %v\n%+v", err, res.Checks)
	}
	if res.TCBStatus != TCBUpToDate || res.TCBAcceptedBy != "" {
		t.Fatalf("status %q accepted by %q", res.TCBStatus, res.TCBAcceptedBy)
	}
	if !hexEqual(ev.FMSPC, "B0C06F000000") {
		t.Fatalf("FMSPC %s", ev.FMSPC)
	}
}

func TestRealTDXv5(t *testing.T) {
	ev, hw := realTDXv5.load(t)
	if ev.Version != 5 || ev.BodyType != tdxBodyTypeTD15 || len(ev.TeeTcbSvn2) != 16 || len(ev.MrServiceTD) != 48 {
		t.Fatalf("v5 fields: version %d body %d svn2 %x servicetd %x", ev.Version, ev.BodyType, ev.TeeTcbSvn2, ev.MrServiceTD)
	}
	var res Result
	err := VerifyTDX(context.Background(), ev, hw, &res)
	if ClassOf(err) != ClassTCB {
		t.Fatalf("got %v, want ClassTCB (Intel rates this platform out of date)\n%+v", err, res.Checks)
	}
	for _, c := range res.Checks[:2] {
		if !c.OK {
			t.Fatalf("chain and signature must pass: %+v", res.Checks)
		}
	}
	// CPUSVN component 7 is 3 where every TCB level of Intel's TCB info
	// asks for at least 5: Intel's rule is "TCB not supported", which no
	// operator policy can accept.
	if res.TCBStatus != tcbUnsupported {
		t.Fatalf("status %q, want %s", res.TCBStatus, tcbUnsupported)
	}
	if tcbRow(&res, "TEE_TCB_SVN2 (module running now)") == nil {
		t.Fatalf("no TEE_TCB_SVN2 row: %+v", res.TCB)
	}
	hw.TCBPolicy = TCBPolicy{TDXAcceptStatuses: acceptableTDXStatuses}
	if err := VerifyTDX(context.Background(), ev, hw, &Result{}); ClassOf(err) != ClassTCB {
		t.Fatalf("Unsupported accepted by a permissive policy: %v", err)
	}
}

func TestRealTDXTampered(t *testing.T) {
	for _, c := range []realTDXCase{realTDXv4, realTDXv5} {
		raw := readReal(t, realTDXDir, c.quote)
		for _, off := range []int{0x30 + 8, 0x100, 0x2a0} { // body fields in v4 and v5
			b := slices.Clone(raw)
			b[off] ^= 1
			ev, err := ParseTDXQuote(b)
			if err != nil {
				t.Fatalf("%s byte %#x: %v", c.quote, off, err)
			}
			err = VerifyTDX(context.Background(), ev, HardwareOptions{Now: c.now, SkipCollateral: true}, &Result{})
			if ClassOf(err) != ClassSignature {
				t.Fatalf("%s byte %#x flipped: got %v, want ClassSignature", c.quote, off, err)
			}
		}
	}
}

func TestRealTDXTamperedCollateral(t *testing.T) {
	ev, hw := realTDXv4.load(t)
	src := hw.Collateral.(realSource)
	tcb := src[TDXCollateralURLs(ev)[0]]
	// Make the platform's level look outdated: a TCB verdict must never
	// come from an altered TCB info.
	tcb.Body = []byte(replaceOnce(t, string(tcb.Body), `"tcbStatus":"UpToDate"`, `"tcbStatus":"OutOfDate"`))
	var res Result
	err := VerifyTDX(context.Background(), ev, hw, &res)
	if ClassOf(err) != ClassCollateral || len(res.TCB) != 0 {
		t.Fatalf("altered TCB info: got %v, TCB rows %+v", err, res.TCB)
	}
}

func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	i := indexOf(s, old)
	if i < 0 {
		t.Fatalf("%q not found", old)
	}
	return s[:i] + new + s[i+len(old):]
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestRealTDXExpiredAndFutureCollateral(t *testing.T) {
	ev, hw := realTDXv4.load(t)
	hw.Now = time.Date(2025, 7, 25, 0, 0, 0, 0, time.UTC) // after nextUpdate
	for _, it := range hw.Collateral.(realSource) {
		it.FetchedAt = hw.Now.Add(-time.Hour)
	}
	if err := VerifyTDX(context.Background(), ev, hw, &Result{}); ClassOf(err) != ClassCollateralStale {
		t.Fatalf("past nextUpdate: got %v, want collateral-stale", err)
	}
	ev, hw = realTDXv4.load(t)
	for _, it := range hw.Collateral.(realSource) {
		it.FetchedAt = hw.Now.Add(time.Hour)
	}
	if err := VerifyTDX(context.Background(), ev, hw, &Result{}); ClassOf(err) != ClassCollateral {
		t.Fatalf("fetched in the future: got %v, want collateral", err)
	}
	ev, hw = realTDXv4.load(t)
	hw.Now = time.Date(2025, 6, 19, 9, 0, 0, 0, time.UTC) // before the TCB info's issueDate
	for _, it := range hw.Collateral.(realSource) {
		it.FetchedAt = hw.Now
	}
	if err := VerifyTDX(context.Background(), ev, hw, &Result{}); ClassOf(err) != ClassCollateral {
		t.Fatalf("issued in the future: got %v, want collateral", err)
	}
}

// trustee's v5 quote has no published collateral: signature and chain only.
// Its TD 1.5 body binds a service TD (MR_SERVICETD non-zero).
func TestRealTDXTrusteeQuotes(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		file    string
		version int
	}{{"trustee-tdx_quote_5.dat", 5}, {"trustee-tdx_quote_4.dat", 4}, {"trustee-tdx_quote_6.dat", 4}} {
		ev, err := ParseTDXQuote(readReal(t, realTDXDir, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if ev.Version != tc.version {
			t.Fatalf("%s: version %d", tc.file, ev.Version)
		}
		var res Result
		if err := VerifyTDX(context.Background(), ev, HardwareOptions{Now: now, SkipCollateral: true}, &res); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
	}
}

// trustee's tdx_quote_4.dat comes from a debug TD: never accepted, whatever
// the reference says.
func TestRealTDXDebugGuest(t *testing.T) {
	ev, err := ParseTDXQuote(readReal(t, realTDXDir, "trustee-tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	b := ev.Quote.GetTdQuoteBody()
	ref := TDXReference{MrTd: hex.EncodeToString(b.GetMrTd()), MrSeam: hex.EncodeToString(b.GetMrSeam()), Xfam: hex.EncodeToString(b.GetXfam()), TdAttributes: hex.EncodeToString(b.GetTdAttributes())}
	for i, r := range b.GetRtmrs() {
		ref.Rtmrs[i] = hex.EncodeToString(r)
	}
	if err := CheckTDX(ev, []TDXReference{ref}, Binding{}, &Result{}); ClassOf(err) != ClassDebug {
		t.Fatalf("debug TD: got %v, want ClassDebug", err)
	}
}

// A v5 quote with a TD 1.0 body (type 2) parses to the same TD fields; the
// reframed copy is not signed that way, so its signature must fail.
func TestTDXv5BodyType2(t *testing.T) {
	raw := readReal(t, realTDXDir, "trustee-tdx_quote_5.dat")
	b := append(slices.Clone(raw[:48]), 2, 0, 0x48, 0x02, 0, 0)
	b = append(b, raw[54:54+584]...)
	b = append(b, raw[54+648:]...)
	ev, err := ParseTDXQuote(b)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := ParseTDXQuote(raw)
	if ev.BodyType != tdxBodyTypeTD10 || ev.TeeTcbSvn2 != nil || !slices.Equal(ev.Quote.TdQuoteBody.MrTd, orig.Quote.TdQuoteBody.MrTd) {
		t.Fatalf("body type %d svn2 %x", ev.BodyType, ev.TeeTcbSvn2)
	}
	err = VerifyTDX(context.Background(), ev, HardwareOptions{Now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), SkipCollateral: true}, &Result{})
	if ClassOf(err) != ClassSignature {
		t.Fatalf("reframed quote: got %v, want ClassSignature", err)
	}
	for _, bad := range [][2]byte{{1, 0}, {3, 0}} { // SGX body type; TD 1.5 type with TD 1.0 size
		c := slices.Clone(b)
		c[48], c[49] = bad[0], bad[1]
		if _, err := ParseTDXQuote(c); ClassOf(err) != ClassMalformed {
			t.Fatalf("body type %d: %v", bad[0], err)
		}
	}
}

// refFromQuote pins every value the quote has, as an operator copying them
// from a known-good host would.
func refFromQuote(ev *TDXEvidence) TDXReference {
	b := ev.Quote.GetTdQuoteBody()
	ref := TDXReference{MrTd: hex.EncodeToString(b.GetMrTd()), MrSeam: hex.EncodeToString(b.GetMrSeam()), Xfam: hex.EncodeToString(b.GetXfam()), TdAttributes: hex.EncodeToString(b.GetTdAttributes())}
	for i, r := range b.GetRtmrs() {
		ref.Rtmrs[i] = hex.EncodeToString(r)
	}
	return ref
}

func TestTDXXFAMMask(t *testing.T) {
	ev, _ := realTDXv5.load(t) // XFAM e718060000000000: CET_U and CET_S set
	ref := refFromQuote(ev)
	for _, tc := range []struct {
		name string
		xfam string
		ok   bool
	}{
		{"exact", "e718060000000000", true},
		{"CET_U/CET_S cleared", "e700060000000000", true},
		{"only CET_S", "e710060000000000", true},
		{"AMX tile data cleared (bit 18)", "e718020000000000", false},
		{"PKRU added (bit 9)", "e71a060000000000", false},
		{"AVX-512 cleared (bit 7)", "6718060000000000", false},
	} {
		ref.Xfam = tc.xfam
		err := CheckTDX(ev, []TDXReference{ref}, Binding{}, &Result{})
		if (err == nil) != tc.ok || (err != nil && ClassOf(err) != ClassMeasurement) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// A TD 1.5 body with a service TD bound (trustee's v5 sample) is refused;
// one without (dcap-qvl's) passes.
func TestTDXServiceTDRefused(t *testing.T) {
	ev, err := ParseTDXQuote(readReal(t, realTDXDir, "trustee-tdx_quote_5.dat"))
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	err = CheckTDX(ev, []TDXReference{refFromQuote(ev)}, Binding{}, &res)
	if ClassOf(err) != ClassMeasurement || !strings.Contains(err.Error(), "MR_SERVICETD") {
		t.Fatalf("service TD bound: %v", err)
	}
	ev, _ = realTDXv5.load(t)
	if err := CheckTDX(ev, []TDXReference{refFromQuote(ev)}, Binding{}, &Result{}); err != nil {
		t.Fatalf("no service TD: %v", err)
	}
}

// When go-tdx-guest objects to the certificates although every signature
// verifies, the verdict is chain, not signature.
func TestTDXLibraryChainObjectionIsChain(t *testing.T) {
	ev, _ := realTDXv4.load(t)
	if err := verifyTDXSignature(ev, x509.NewCertPool(), realTDXv4.now); ClassOf(err) != ClassChain {
		t.Fatalf("library chain objection: got %v, want ClassChain", err)
	}
	raw := slices.Clone(readReal(t, realTDXDir, realTDXv4.quote))
	raw[0x100] ^= 1
	bad, err := ParseTDXQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTDXSignature(bad, x509.NewCertPool(), realTDXv4.now); ClassOf(err) != ClassSignature {
		t.Fatalf("tampered quote: got %v, want ClassSignature", err)
	}
}

// A coordinator on a TDX 1.5 module can only relay a v5 quote in Intel's
// binary form; the document parser accepts it with or without the type OID.
func TestParseDocRawV5Quote(t *testing.T) {
	raw := readReal(t, realTDXDir, realTDXv5.quote)
	ca := "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
	for _, typ := range []string{`"attestation_type":[1,3,9901,2,2],`, ""} {
		doc := []byte(`{"version":"v1",` + typ + `"raw_attestation_doc":"` + base64.StdEncoding.EncodeToString(raw) + `","manifests":["e30="],"policies":[],"root_ca":"` + base64.StdEncoding.EncodeToString([]byte(ca)) + `","mesh_ca":"` + base64.StdEncoding.EncodeToString([]byte(ca)) + `"}`)
		d, err := ParseDoc(doc)
		if err != nil {
			t.Fatalf("type %q: %v", typ, err)
		}
		if d.Platform != PlatformTDX || d.TDX.Version != 5 {
			t.Fatalf("platform %s version %d", d.Platform, d.TDX.Version)
		}
	}
}

// automataSource assembles collateral for Automata's Alibaba Cloud v5
// quote: Automata's Intel-signed TCB info and TD QE identity (June 2025),
// with Intel's issuer chain and CRLs from dcap-qvl's June 2025 collateral
// (the same Intel TCB Signing certificate and PCK Platform CA sign both).
func automataSource(t testing.TB, ev *TDXEvidence, fetched time.Time) realSource {
	t.Helper()
	src := qvlToSource(t, ev, readReal(t, realTDXDir, "dcap-qvl-tdx_quote_collateral.json"), fetched)
	urls := TDXCollateralURLs(ev)
	src[urls[0]].Body = readReal(t, realTDXDir, "automata-0625-tcbinfov3_90C06F000000.json")
	src[urls[1]].Body = readReal(t, realTDXDir, "automata-0625-qe_td.json")
	return src
}

// A genuine quote v5 from an Alibaba Cloud TDX 1.5 host. With Intel's June
// 2025 collateral (evaluation data number 17) it is UpToDate and accepted.
// With Intel's February 2026 TCB info for the same FMSPC (number 18, from
// dcap-qvl) the same platform is OutOfDate: a tcb verdict naming Intel's
// advisories, unless the operator accepts exactly that status and those
// advisories. Its bound service TD is refused by the reference check.
func TestRealTDXv5Alibaba(t *testing.T) {
	ev, err := ParseTDXQuote(readReal(t, realTDXDir, "automata-alibaba_quote_5.dat"))
	if err != nil {
		t.Fatal(err)
	}
	june := time.Date(2025, 6, 25, 0, 0, 0, 0, time.UTC)
	var res Result
	if err := VerifyTDX(context.Background(), ev, HardwareOptions{Now: june, Collateral: automataSource(t, ev, june.Add(-24*time.Hour))}, &res); err != nil || res.TCBStatus != TCBUpToDate {
		t.Fatalf("June 2025: %v, status %q\n%+v", err, res.TCBStatus, res.Checks)
	}

	march := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	hw := HardwareOptions{Now: march, Collateral: qvlToSource(t, ev, readReal(t, realTDXDir, realTDXv5.collateral), march.Add(-24*time.Hour))}
	res = Result{}
	err = VerifyTDX(context.Background(), ev, hw, &res)
	if ClassOf(err) != ClassTCB || res.TCBStatus != TCBOutOfDate || !slices.Contains(res.TCBAdvisories, "INTEL-SA-01036") {
		t.Fatalf("March 2026: %v, status %q advisories %v\n%+v", err, res.TCBStatus, res.TCBAdvisories, res.Checks)
	}
	hw.TCBPolicy = TCBPolicy{TDXAcceptStatuses: []string{TCBOutOfDate}, TDXAcceptAdvisories: res.TCBAdvisories}
	var res2 Result
	if err := VerifyTDX(context.Background(), ev, hw, &res2); err != nil || !strings.Contains(res2.TCBAcceptedBy, "OutOfDate") {
		t.Fatalf("accepted by policy: %v %q", err, res2.TCBAcceptedBy)
	}
	if err := CheckTDX(ev, []TDXReference{refFromQuote(ev)}, Binding{}, &res2); ClassOf(err) != ClassMeasurement {
		t.Fatalf("service TD bound: %v", err)
	}
}
