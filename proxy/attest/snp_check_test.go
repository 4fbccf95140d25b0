package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
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

func TestSNPIDKeyRecoveredKeyVerifies(t *testing.T) {
	for _, pol := range []abi.SnpPolicy{{SMT: true}, {ABIMajor: 1, ABIMinor: 55, SMT: true, MigrateMA: true}, {}} {
		var m [48]byte
		for i := range m {
			m[i] = byte(3 * i)
		}
		block := snpIDBlock(m, pol)
		h := sha512.Sum384(block[:])
		x, y, err := snpRecoverIDKey(big.NewInt(2), big.NewInt(1), new(big.Int).SetBytes(h[:]))
		if err != nil {
			t.Fatalf("recover: %v", err)
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P384(), X: x, Y: y}
		if !ecdsa.Verify(pub, h[:], big.NewInt(2), big.NewInt(1)) {
			t.Fatalf("recovered key does not verify (2, 1) over the ID block")
		}
		d, err := SNPIDKeyDigest(m, pol)
		if err != nil {
			t.Fatal(err)
		}
		enc := snpAMDPublicKey(x, y)
		if want := sha512.Sum384(enc); d != want || len(enc) != 0x404 || enc[0] != 2 {
			t.Fatalf("digest mismatch or bad encoding")
		}
		// Cross-check our encoding with the library's.
		lib, err := abi.EcdsaPublicKeyToBytes(pub)
		if err != nil || string(lib) != string(enc) {
			t.Fatalf("AMD key encoding differs from go-sev-guest's: %v", err)
		}
	}
}

// snpIDKeyGolden is testdata/snp/idkey_golden.json.
type snpIDKeyGolden struct {
	Measurement string `json:"measurement"`
	Policy      uint64 `json:"policy"`
	IDBlock     string `json:"id_block"`
	IDKeyDigest string `json:"id_key_digest"`
}

// TestSNPIDKeyDigestGolden pins the derivation for one measurement and
// policy. Regenerate with SNP_UPDATE_GOLDEN=1 only after checking the new
// value against a real Contrast guest.
func TestSNPIDKeyDigestGolden(t *testing.T) {
	path := filepath.Join("testdata", "snp", "idkey_golden.json")
	var m [48]byte
	for i := range m {
		m[i] = byte(0xa0 + i)
	}
	pol := abi.SnpPolicy{SMT: true}
	d, err := SNPIDKeyDigest(m, pol)
	if err != nil {
		t.Fatal(err)
	}
	block := snpIDBlock(m, pol)
	got := snpIDKeyGolden{hex.EncodeToString(m[:]), abi.SnpPolicyToBytes(pol), hex.EncodeToString(block[:]), hex.EncodeToString(d[:])}
	if os.Getenv("SNP_UPDATE_GOLDEN") == "1" {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want snpIDKeyGolden
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
