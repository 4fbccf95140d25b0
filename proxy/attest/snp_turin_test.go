package attest

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
)

var (
	turinAuthOnce sync.Once
	turinAuth     *attesttest.SNPAuthority
	turinAuthErr  error
)

// turinAuthority issues Turin-shaped evidence: Turin TCB layout, VCEKs with
// fmcSPL and an 8-byte hwID, like genuine Turin VCEKs.
func turinAuthority(t testing.TB) *attesttest.SNPAuthority {
	t.Helper()
	turinAuthOnce.Do(func() { turinAuth, turinAuthErr = attesttest.NewSNPAuthority("Turin", snpNow) })
	if turinAuthErr != nil {
		t.Fatal(turinAuthErr)
	}
	return turinAuth
}

func turinFixture(t testing.TB) *snpFixture {
	f := newSNPFixture(t)
	f.ref.ProductName = "Turin"
	// The authority's Turin TCB is fmc=1 bl=4 tee=0 snp=22 ucode=213.
	f.ref.MinimumTCB = SNPTCB{BootloaderVersion: u8(4), TEEVersion: u8(0), SNPVersion: u8(22), MicrocodeVersion: u8(213)}
	return f
}

func TestSNPTurinTestSigned(t *testing.T) {
	a := turinAuthority(t)
	f := turinFixture(t)
	b, err := a.Attestation(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseSNPAttestationProto(b)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Product != "Turin" {
		t.Fatalf("product %q", ev.Product)
	}
	var res Result
	if err := VerifySNP(context.Background(), ev, snpTestOpts(a), &res); err != nil {
		t.Fatalf("VerifySNP: %v\n%+v", err, res.Checks)
	}
	if err := CheckSNP(ev, []SNPReference{f.ref}, f.binding, &res); err != nil {
		t.Fatalf("CheckSNP: %v", err)
	}
	row := func(name string) *TCBComponent {
		for i := range res.TCB {
			if res.TCB[i].Name == name {
				return &res.TCB[i]
			}
		}
		t.Fatalf("no TCB row %s in %+v", name, res.TCB)
		return nil
	}
	// Turin layout: byte 0 is FMC, byte 1 bootloader, byte 3 SNP.
	if r := row("REPORTED_TCB.fmc"); r.Actual != "1" {
		t.Fatalf("fmc %+v", r)
	}
	if r := row("REPORTED_TCB.bootloader"); r.Actual != "4" || r.Status != "ok" {
		t.Fatalf("bootloader %+v", r)
	}
	if r := row("REPORTED_TCB.snp"); r.Actual != "22" || r.Status != "ok" {
		t.Fatalf("snp %+v", r)
	}

	// A minimum above the Turin SNP SPL fails as tcb, on the right part.
	f.ref.MinimumTCB.SNPVersion = u8(23)
	if err := CheckSNP(ev, []SNPReference{f.ref}, f.binding, &Result{}); ClassOf(err) != ClassTCB || !strings.Contains(err.Error(), ".snp") {
		t.Fatalf("Turin SNP SPL below minimum: %v", err)
	}

	// Tampered: signature.
	ev2, _ := ParseSNPAttestationProto(b)
	ev2.Attestation.Report.ReportData[0] ^= 1
	ev2.report = nil
	if err := VerifySNP(context.Background(), ev2, snpTestOpts(a), &Result{}); ClassOf(err) != ClassSignature {
		t.Fatalf("tampered Turin report: %v", err)
	}
}

// Without a VCEK in the evidence, the Turin VCEK is looked up at the Turin
// KDS URL (8-byte chip ID, fmcSPL) in the collateral.
func TestSNPTurinVCEKFromCollateral(t *testing.T) {
	a := turinAuthority(t)
	f := turinFixture(t)
	raw, err := a.RawReport(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseSNPReport(raw)
	if err != nil {
		t.Fatal(err)
	}
	ev.Attestation.CertificateChain.VcekCert = nil
	chip := a.ChipID()
	want := "https://kdsintf.amd.com/vcek/v1/Turin/" + hex.EncodeToString(chip[:8]) + "?fmcSPL=1&blSPL=4&teeSPL=0&snpSPL=22&ucodeSPL=213"
	if urls := SNPCollateralURLs(ev); len(urls) == 0 || urls[0] != want {
		t.Fatalf("collateral URLs %v, want first %s", urls, want)
	}
	opts := snpTestOpts(a)
	opts.Collateral = &snpMapSource{items: a.Collateral(snpNow.Add(-time.Hour)), fetchedAt: snpNow.Add(-time.Hour)}
	var res Result
	if err := VerifySNP(context.Background(), ev, opts, &res); err != nil {
		t.Fatalf("VerifySNP: %v", err)
	}
	if res.Collateral[0].URL != want {
		t.Fatalf("VCEK from %s", res.Collateral[0].URL)
	}
}

func TestSNPOperatorMinimumTCB(t *testing.T) {
	for _, tc := range []struct {
		name   string
		min    SNPMinimumTCB
		want   Class
		turin  bool
		accept bool
	}{
		{"Milan meets floor", SNPMinimumTCB{SNP: u8(22), Microcode: u8(213)}, "", false, true},
		{"Milan below floor", SNPMinimumTCB{SNP: u8(23)}, ClassTCB, false, false},
		{"Turin FMC meets floor", SNPMinimumTCB{FMC: u8(1)}, "", true, true},
		{"Turin FMC below floor", SNPMinimumTCB{FMC: u8(2)}, ClassTCB, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, f, product := snpAuthority(t), newSNPFixture(t), "Milan"
			if tc.turin {
				a, f, product = turinAuthority(t), turinFixture(t), "Turin"
			}
			b, err := a.Attestation(f.opts)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ParseSNPAttestationProto(b)
			if err != nil {
				t.Fatal(err)
			}
			opts := snpTestOpts(a)
			opts.TCBPolicy = TCBPolicy{SNPMinimumTCB: map[string]SNPMinimumTCB{product: tc.min}}
			var res Result
			err = VerifySNP(context.Background(), ev, opts, &res)
			if ClassOf(err) != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if (res.TCBAcceptedBy != "") != tc.accept {
				t.Fatalf("TCBAcceptedBy %q", res.TCBAcceptedBy)
			}
		})
	}
	if err := (TCBPolicy{SNPMinimumTCB: map[string]SNPMinimumTCB{"Milan": {FMC: u8(1)}}}).Validate(); err == nil {
		t.Fatal("an FMC floor for Milan must be refused")
	}
}
