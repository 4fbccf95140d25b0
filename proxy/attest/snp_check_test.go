package attest

import (
	"encoding/hex"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/google/go-sev-guest/abi"
)

func TestSNPCheckFailures(t *testing.T) {
	a := snpAuthority(t)
	tcb := attesttest.SNPTCB
	cases := []struct {
		name   string
		mutate func(f *snpFixture)
		want   *Error
		field  string
	}{
		{"ok", func(f *snpFixture) {}, nil, ""},
		{"measurement", func(f *snpFixture) { f.opts.Measurement[0] ^= 1 }, ErrMeasurement, "MEASUREMENT"},
		{"debug policy even if allowed", func(f *snpFixture) {
			f.ref.GuestPolicy.Debug = true
			f.opts.Policy = abi.SnpPolicyToBytes(f.ref.GuestPolicy)
			f.opts.IDKeyDigest, _ = SNPIDKeyDigest(f.opts.Measurement, f.ref.GuestPolicy)
		}, ErrDebug, "POLICY"},
		{"policy MigrateMA not allowed", func(f *snpFixture) {
			f.opts.Policy = abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, MigrateMA: true})
		}, ErrMeasurement, "POLICY"},
		{"policy SMT not allowed", func(f *snpFixture) {
			f.ref.GuestPolicy.SMT = false
			f.ref.PlatformInfo.SMTEnabled = true
		}, ErrMeasurement, "POLICY"},
		{"policy ABI too old", func(f *snpFixture) { f.ref.GuestPolicy.ABIMajor = 1 }, ErrMeasurement, "POLICY"},
		{"VMPL 1", func(f *snpFixture) { f.opts.VMPL = 1 }, ErrMeasurement, "VMPL"},
		{"platform SMT not allowed", func(f *snpFixture) { f.ref.PlatformInfo.SMTEnabled = false }, ErrMeasurement, "PLATFORM_INFO"},
		{"platform TSME required", func(f *snpFixture) { f.ref.PlatformInfo.TSMEEnabled = true }, ErrMeasurement, "PLATFORM_INFO"},
		{"platform alias check required", func(f *snpFixture) { f.ref.PlatformInfo.AliasCheckComplete = true }, ErrMeasurement, "PLATFORM_INFO"},
		{"platform TSME extra is fine", func(f *snpFixture) { f.opts.PlatformInfo |= 2 }, nil, ""},
		{"host data", func(f *snpFixture) { f.opts.HostData[1] = 1 }, ErrMeasurement, "HOST_DATA"},
		{"id key digest", func(f *snpFixture) { f.opts.IDKeyDigest[0] ^= 1 }, ErrMeasurement, "ID_KEY_DIGEST"},
		{"no id block", func(f *snpFixture) { f.opts.IDKeyDigest = [48]byte{} }, ErrMeasurement, "ID_KEY_DIGEST"},
		{"low bootloader", func(f *snpFixture) { f.opts.TCB = tcb(3, 0, 22, 213) }, ErrTCB, "REPORTED_TCB.bootloader"},
		{"low tee", func(f *snpFixture) { f.ref.MinimumTCB.TEEVersion = u8(1) }, ErrTCB, "REPORTED_TCB.tee"},
		{"low snp", func(f *snpFixture) { f.opts.TCB = tcb(4, 0, 21, 213) }, ErrTCB, "REPORTED_TCB.snp"},
		{"low microcode", func(f *snpFixture) { f.opts.TCB = tcb(4, 0, 22, 200) }, ErrTCB, "REPORTED_TCB.microcode"},
		{"low launch tcb", func(f *snpFixture) { f.opts.LaunchTCB = tcb(4, 0, 20, 213) }, ErrTCB, "LAUNCH_TCB.snp"},
		{"mitigation vector", func(f *snpFixture) {
			f.ref.MinimumMitigationVector = 0x3
			f.opts.Version, f.opts.MitigationVector = abi.ReportVersion5, 0x1
		}, ErrTCB, "LAUNCH_MIT_VECTOR"},
		{"mitigation vector met", func(f *snpFixture) {
			f.ref.MinimumMitigationVector = 0x3
			f.opts.Version, f.opts.MitigationVector = abi.ReportVersion5, 0x7
		}, nil, ""},
		{"chip ID allowed", func(f *snpFixture) {
			id := a.ChipID()
			f.ref.AllowedChipIDs = []string{hex.EncodeToString(make([]byte, 64)), hex.EncodeToString(id[:])}
		}, nil, ""},
		{"chip ID not allowed", func(f *snpFixture) { f.ref.AllowedChipIDs = []string{hex.EncodeToString(make([]byte, 64))} }, ErrMeasurement, "CHIP_ID"},
		{"wrong report data", func(f *snpFixture) { f.opts.ReportData[63] = 9 }, ErrReportData, "REPORT_DATA"},
		{"wrong product", func(f *snpFixture) { f.ref.ProductName = "Genoa" }, ErrMeasurement, "PRODUCT"},
		{"bad reference measurement", func(f *snpFixture) { f.ref.TrustedMeasurement = "zz" }, ErrPolicy, "TrustedMeasurement"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newSNPFixture(t)
			tc.mutate(f)
			ev := f.attestation(t, true)
			var res Result
			err := CheckSNP(ev, []SNPReference{f.ref}, f.binding, &res)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckSNP: %v", err)
				}
				return
			}
			wantClass(t, err, tc.want, tc.field)
			if res.Verdict != VerdictRejected || res.ErrorClass != tc.want.Class {
				t.Fatalf("result not rejected with %s: %+v", tc.want.Class, res)
			}
		})
	}
}

func TestSNPCheckMarksMismatch(t *testing.T) {
	f := newSNPFixture(t)
	f.opts.Measurement[0] ^= 1
	ev := f.attestation(t, true)
	var res Result
	wantClass(t, CheckSNP(ev, []SNPReference{f.ref}, f.binding, &res), ErrMeasurement, "MEASUREMENT")
	for _, m := range res.Measurements {
		if m.Name == snpMeasurement && (m.Match || m.Expected != f.ref.TrustedMeasurement) {
			t.Fatalf("MEASUREMENT = %+v", m)
		}
		if m.Name == snpHostData && !m.Match {
			t.Fatalf("HOST_DATA = %+v, want match", m)
		}
	}
}

func TestSNPAnyReferenceMatches(t *testing.T) {
	f := newSNPFixture(t)
	ev := f.attestation(t, true)
	other := f.ref
	other.TrustedMeasurement = hex.EncodeToString(make([]byte, 48))
	if err := CheckSNP(ev, []SNPReference{other, f.ref}, f.binding, &Result{}); err != nil {
		t.Fatalf("second reference should match: %v", err)
	}
	third := f.ref
	third.MinimumTCB.SNPVersion = u8(99)
	// The first reference's error is reported.
	wantClass(t, CheckSNP(ev, []SNPReference{other, third}, f.binding, &Result{}), ErrMeasurement, "MEASUREMENT")
	wantClass(t, CheckSNP(ev, nil, f.binding, &Result{}), ErrPolicy, "")
}
