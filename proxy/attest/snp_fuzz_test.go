package attest

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-sev-guest/abi"
	sevtestdata "github.com/google/go-sev-guest/verify/testdata"
)

// snpFuzzCheck runs everything downstream of a successful parse: none of it
// may panic on evidence that parsed.
func snpFuzzCheck(ev *SNPEvidence) {
	_ = SNPCollateralURLs(ev)
	_ = VerifySNP(context.Background(), ev, HardwareOptions{Now: snpRealTime, SkipCollateral: true}, &Result{})
	_ = CheckSNP(ev, []SNPReference{{TrustedMeasurement: "00"}}, Binding{}, &Result{})
}

func FuzzParseSNPReport(f *testing.F) {
	f.Add(sevtestdata.AttestationBytes)
	f.Add(snpMilanWithVCEKTable())
	f.Add(sevtestdata.AttestationBytes[:abi.ReportSize-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseSNPReport(b)
		if err != nil {
			if ClassOf(err) != ClassMalformed {
				t.Fatalf("parse error of class %q: %v", ClassOf(err), err)
			}
			return
		}
		snpFuzzCheck(ev)
	})
}

func FuzzParseSNPAttestationProto(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseSNPAttestationProto(b)
		if err != nil {
			if ClassOf(err) != ClassMalformed {
				t.Fatalf("parse error of class %q: %v", ClassOf(err), err)
			}
			return
		}
		snpFuzzCheck(ev)
	})
}

// TestSNPWriteFuzzSeeds regenerates the checked-in seed corpora from the
// real Milan report and the test authority (SNP_WRITE_FUZZ_SEEDS=1).
func TestSNPWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SNP_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set SNP_WRITE_FUZZ_SEEDS=1 to regenerate")
	}
	f := newSNPFixture(t)
	a := snpAuthority(t)
	raw, err := a.RawReport(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	att, err := a.Attestation(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	attNoCRL, err := a.AttestationWithoutCRL(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	write := func(target, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzParseSNPReport", "real-milan-v2", sevtestdata.AttestationBytes)
	write("FuzzParseSNPReport", "real-milan-v2-vcek-table", snpMilanWithVCEKTable())
	write("FuzzParseSNPReport", "test-signed-v3-table", raw)
	write("FuzzParseSNPReport", "truncated", raw[:abi.ReportSize+10])
	write("FuzzParseSNPAttestationProto", "test-signed-crl", att)
	write("FuzzParseSNPAttestationProto", "test-signed", attNoCRL)
}

// FuzzTurinEndorsementInfo feeds certificates to our reader of Turin KDS
// extensions; seeds (testdata/fuzz/FuzzTurinEndorsementInfo) include a
// genuine Turin VCEK.
func FuzzTurinEndorsementInfo(f *testing.F) {
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		for _, signer := range []abi.ReportSigner{abi.VcekReportSigner, abi.VlekReportSigner} {
			info, err := turinEndorsementInfo(c, signer)
			if err != nil {
				continue
			}
			if signer == abi.VcekReportSigner && len(info.hwid) != 8 {
				t.Fatalf("accepted a Turin VCEK with a %d-byte hwID", len(info.hwid))
			}
			if signer == abi.VlekReportSigner && info.cspID == "" {
				t.Fatal("accepted a Turin VLEK without cspId")
			}
		}
	})
}
