package attest

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// Genuine SEV-SNP evidence; see testdata/real/README.md for sources.
const realSNPDir = "testdata/real/snp"

// realSNPNow lies inside every real certificate's validity.
var realSNPNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func realCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(readReal(t, realSNPDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// realSNPEvidence builds evidence from a genuine report and its genuine
// endorsement certificate, as a backend's extended report carries them.
func realSNPEvidence(t testing.TB, report []byte, ek []byte, vlek bool) *SNPEvidence {
	t.Helper()
	chain := &spb.CertificateChain{VcekCert: ek}
	if vlek {
		chain = &spb.CertificateChain{VlekCert: ek}
	}
	rep, err := abi.ReportToProto(report)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := newSNPEvidence(&spb.Attestation{Report: rep, CertificateChain: chain}, report, slices.Clone(report))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestRealTurinVCEK(t *testing.T) {
	vcek := realCert(t, "virtee-vcek_turin.der")
	// Why go-sev-guest v0.15.0 (the newest release) refuses it: the first
	// KDS extension it does not know is fmcSPL.
	if _, err := kds.VcekCertificateExtensions(vcek); err == nil || !strings.Contains(err.Error(), "1.3.6.1.4.1.3704.1.3.9") {
		t.Fatalf("library on a Turin VCEK: %v", err)
	}
	info, err := snpEndorsementInfo(vcek, abi.VcekReportSigner, "Turin")
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(info.hwid) != "1e550a8ee5cf9f4d" || snpTCBString("Turin", info.tcb) != "fmc=0 bootloader=0 tee=0 snp=0 microcode=9" {
		t.Fatalf("hwid %x tcb %s", info.hwid, snpTCBString("Turin", info.tcb))
	}
	roots, err := snpRootsFor("Turin", abi.VcekReportSigner, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snpVerifyChain(vcek, roots, abi.VcekReportSigner, "Turin", realSNPNow); err != nil {
		t.Fatalf("genuine Turin VCEK to the embedded AMD Turin roots: %v", err)
	}
	// virtee's Turin cert_chain is AMD's, the same as the embedded roots.
	ask, ark := pemCerts(t, readReal(t, realSNPDir, "virtee-cert_chain_turin"))
	if !ask.Equal(roots.ica) || !ark.Equal(roots.ark) {
		t.Fatal("virtee's Turin chain differs from the embedded AMD Turin chain")
	}
	// The VCEK a Turin report with this chip and TCB needs is found at the
	// Turin KDS URL: 8-byte chip ID, fmcSPL first.
	chip := make([]byte, 64)
	copy(chip, info.hwid)
	want := "https://kdsintf.amd.com/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=0&blSPL=0&teeSPL=0&snpSPL=0&ucodeSPL=9"
	if got := snpVCEKURL("Turin", chip, info.tcb); got != want {
		t.Fatalf("VCEK URL %s, want %s", got, want)
	}
	// A Milan chain does not certify it, and a flipped signature byte
	// breaks the chain.
	milan, _ := snpRootsFor("Milan", abi.VcekReportSigner, nil)
	if err := snpVerifyChain(vcek, milan, abi.VcekReportSigner, "Turin", realSNPNow); ClassOf(err) != ClassChain {
		t.Fatalf("Turin VCEK with Milan roots: %v", err)
	}
	bad := slices.Clone(vcek.Raw)
	bad[len(bad)-5] ^= 1
	badCert, err := x509.ParseCertificate(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := snpVerifyChain(badCert, roots, abi.VcekReportSigner, "Turin", realSNPNow); ClassOf(err) != ClassChain {
		t.Fatalf("tampered Turin VCEK: %v", err)
	}
}

func pemCerts(t testing.TB, b []byte) (first, second *x509.Certificate) {
	t.Helper()
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) != 2 {
		t.Fatalf("%d certificates, want 2", len(out))
	}
	return out[0], out[1]
}

func TestRealSNPReports(t *testing.T) {
	virteeHex := strings.TrimSpace(string(readReal(t, realSNPDir, "virtee-report_milan.hex")))
	virtee, err := hex.DecodeString(virteeHex)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, product string
		report        []byte
		ek            string
		vlek          bool
	}{
		{"virtee Milan VCEK", "Milan", virtee, "virtee-vcek_milan.der", false},
		{"trustee Milan VCEK (v2 report)", "Milan", readReal(t, realSNPDir, "trustee-test-report.bin"), "trustee-test-vcek.der", false},
		{"trustee Milan VLEK", "Milan", readReal(t, realSNPDir, "trustee-test-vlek-report.bin"), "trustee-test-vlek.der", true},
		{"trustee Azure Genoa VCEK", "Genoa", genoaReport(t), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ek := genoaVCEK(t)
			if tc.ek != "" {
				ek = readReal(t, realSNPDir, tc.ek)
			}
			ev := realSNPEvidence(t, tc.report, ek, tc.vlek)
			if ev.Product != tc.product {
				t.Fatalf("product %q", ev.Product)
			}
			var res Result
			err := VerifySNP(context.Background(), ev, HardwareOptions{Now: realSNPNow, SkipCollateral: true}, &res)
			if err != nil {
				t.Fatalf("%v\n%+v", err, res.Checks)
			}
			// One flipped byte in the signed part: ClassSignature.
			bad := slices.Clone(tc.report)
			bad[0x50] ^= 1
			ev = realSNPEvidence(t, bad, ek, tc.vlek)
			if err := VerifySNP(context.Background(), ev, HardwareOptions{Now: realSNPNow, SkipCollateral: true}, &Result{}); ClassOf(err) != ClassSignature {
				t.Fatalf("tampered: %v", err)
			}
		})
	}
}

// azEvidence is trustee's Azure vTPM evidence: an HCL report (a 32-byte
// header, then the SNP report) and the VCEK in PEM.
type azEvidence struct {
	Report []int  `json:"report"`
	VCEK   string `json:"vcek"`
}

func readAzGenoa(t testing.TB) azEvidence {
	t.Helper()
	var e azEvidence
	if err := json.Unmarshal(readReal(t, realSNPDir, "trustee-az-snp-vtpm-evidence-genoa.json"), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func genoaReport(t testing.TB) []byte {
	e := readAzGenoa(t)
	if len(e.Report) < 32+abi.ReportSize {
		t.Fatalf("HCL report is %d bytes", len(e.Report))
	}
	out := make([]byte, abi.ReportSize)
	for i := range out {
		out[i] = byte(e.Report[32+i])
	}
	return out
}

func genoaVCEK(t testing.TB) []byte {
	blk, _ := pem.Decode([]byte(readAzGenoa(t).VCEK))
	if blk == nil {
		t.Fatal("no PEM VCEK")
	}
	return blk.Bytes
}

// trustee's deliberately broken VCEKs for its Milan report: never a pass,
// and never a signature verdict.
func TestRealSNPInvalidVCEKs(t *testing.T) {
	report := readReal(t, realSNPDir, "trustee-test-report.bin")
	for _, name := range []string{"trustee-test-vcek-invalid-legacy.der", "trustee-test-vcek-invalid-new.der"} {
		rep, err := abi.ReportToProto(report)
		if err != nil {
			t.Fatal(err)
		}
		ev := &SNPEvidence{Attestation: &spb.Attestation{Report: rep, CertificateChain: &spb.CertificateChain{VcekCert: readReal(t, realSNPDir, name)}}, Raw: report, report: report, Product: "Milan"}
		err = VerifySNP(context.Background(), ev, HardwareOptions{Now: realSNPNow, SkipCollateral: true}, &Result{})
		if c := ClassOf(err); c != ClassChain && c != ClassCollateral {
			t.Fatalf("%s: got %v, want chain or collateral", name, err)
		}
	}
}
