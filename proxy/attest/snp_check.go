package attest

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// Measurement names of SEV-SNP report fields in Result.Measurements.
const (
	snpMeasurement  = "MEASUREMENT"
	snpHostData     = "HOST_DATA"
	snpReportData   = "REPORT_DATA"
	snpPolicy       = "POLICY"
	snpIDKeyDigest  = "ID_KEY_DIGEST"
	snpAuthorKey    = "AUTHOR_KEY_DIGEST"
	snpFamilyID     = "FAMILY_ID"
	snpImageID      = "IMAGE_ID"
	snpChipID       = "CHIP_ID"
	snpVMPL         = "VMPL"
	snpPlatformInfo = "PLATFORM_INFO"
)

// snpTCBKinds are the report's TCB fields in Result.TCB order.
var snpTCBKinds = []string{"CURRENT_TCB", "REPORTED_TCB", "COMMITTED_TCB", "LAUNCH_TCB"}

func snpTCBOf(rep *spb.Report, kind string) uint64 {
	switch kind {
	case "CURRENT_TCB":
		return rep.GetCurrentTcb()
	case "REPORTED_TCB":
		return rep.GetReportedTcb()
	case "COMMITTED_TCB":
		return rep.GetCommittedTcb()
	default:
		return rep.GetLaunchTcb()
	}
}

// fillSNPValues records the report's actual values in res (once; a second
// call keeps the Expected/Match set by CheckSNP).
func fillSNPValues(product string, rep *spb.Report, res *Result) {
	for _, m := range res.Measurements {
		if m.Name == snpMeasurement {
			return
		}
	}
	h := hex.EncodeToString
	res.Measurements = append(res.Measurements,
		Measurement{Name: snpMeasurement, Actual: h(rep.GetMeasurement())},
		Measurement{Name: snpHostData, Actual: h(rep.GetHostData())},
		Measurement{Name: snpReportData, Actual: h(rep.GetReportData())},
		Measurement{Name: snpPolicy, Actual: fmt.Sprintf("%016x", rep.GetPolicy())},
		Measurement{Name: snpIDKeyDigest, Actual: h(rep.GetIdKeyDigest())},
		Measurement{Name: snpAuthorKey, Actual: h(rep.GetAuthorKeyDigest())},
		Measurement{Name: snpFamilyID, Actual: h(rep.GetFamilyId())},
		Measurement{Name: snpImageID, Actual: h(rep.GetImageId())},
		Measurement{Name: snpChipID, Actual: h(rep.GetChipId())},
		Measurement{Name: snpVMPL, Actual: fmt.Sprintf("%08x", rep.GetVmpl())},
		Measurement{Name: snpPlatformInfo, Actual: fmt.Sprintf("%016x", rep.GetPlatformInfo())},
	)
	for _, kind := range snpTCBKinds {
		for _, p := range snpTCBValues(product, snpTCBOf(rep, kind)) {
			res.TCB = append(res.TCB, TCBComponent{Name: kind + "." + p.name, Actual: fmt.Sprint(p.value), Status: "reported"})
		}
	}
}

// snpExpect is what one reference expects of one field, and whether the
// report meets it.
type snpExpect struct {
	expected string
	match    bool
}

// snpOutcome is the result of checking one reference: every field's
// expectation and the failures in check order.
type snpOutcome struct {
	fields map[string]snpExpect
	tcbMin map[string]string // TCB component name -> minimum
	errs   []error
}

func (o *snpOutcome) expect(name, expected string, match bool, err error) {
	o.fields[name] = snpExpect{expected, match}
	if !match {
		o.errs = append(o.errs, err)
	}
}

// CheckSNP checks measurement, guest policy, VMPL, platform info, TCB
// minimums, mitigation vector, chip ID, ID block and binding against the
// reference values. It accepts when any entry of refs matches and otherwise
// returns the first failure for the first entry. A debug guest is always
// ClassDebug. It records Expected/Match in res for the matching (or first)
// entry.
func CheckSNP(ev *SNPEvidence, refs []SNPReference, b Binding, res *Result) error {
	if res == nil {
		res = &Result{}
	}
	res.Platform = PlatformSNP
	if err := checkSNPEvidence(ev); err != nil {
		return res.reject(err)
	}
	rep := ev.Attestation.Report
	fillSNPValues(ev.Product, rep, res)
	if len(refs) == 0 {
		err := newError(ClassPolicy, "ReferenceValues.snp", nil, "no SEV-SNP reference values")
		res.addCheck("snp reference values", false, err.Error())
		return res.reject(err)
	}
	var first *snpOutcome
	for i, ref := range refs {
		o := checkSNPRef(ev, rep, ref, b)
		if len(o.errs) == 0 {
			applySNPOutcome(res, o)
			res.addCheck("snp reference values", true, fmt.Sprintf("matches snp[%d]", i))
			return nil
		}
		if first == nil {
			first = o
		}
	}
	applySNPOutcome(res, first)
	err := first.errs[0]
	res.addCheck("snp reference values", false, fmt.Sprintf("no entry of %d matches; snp[0]: %v", len(refs), err))
	return res.reject(err)
}

func applySNPOutcome(res *Result, o *snpOutcome) {
	for i := range res.Measurements {
		if e, ok := o.fields[res.Measurements[i].Name]; ok {
			res.Measurements[i].Expected, res.Measurements[i].Match = e.expected, e.match
		}
	}
	for i := range res.TCB {
		c := &res.TCB[i]
		if m, ok := o.tcbMin[c.Name]; ok {
			c.Minimum, c.Status = m, "ok"
			var a, mi int
			fmt.Sscan(c.Actual, &a)
			fmt.Sscan(m, &mi)
			if a < mi {
				c.Status = "below minimum"
			}
		}
	}
}

// checkSNPRef checks every field against one reference.
func checkSNPRef(ev *SNPEvidence, rep *spb.Report, ref SNPReference, b Binding) *snpOutcome {
	o := &snpOutcome{fields: map[string]snpExpect{}, tcbMin: map[string]string{}}
	policy, perr := abi.ParseSnpPolicy(rep.GetPolicy())
	// Debug lets the host read guest memory: never acceptable, whatever
	// the reference says.
	if perr == nil && policy.Debug {
		o.errs = append(o.errs, newError(ClassDebug, snpPolicy, nil, "guest policy allows debugging (policy %016x)", rep.GetPolicy()))
	}
	if ref.ProductName != "" && ev.Product != "" && ref.ProductName != ev.Product {
		o.errs = append(o.errs, newError(ClassMeasurement, "PRODUCT", nil, "report is from %s, reference is for %s", ev.Product, ref.ProductName))
	}
	want, err := hex.DecodeString(ref.TrustedMeasurement)
	if err != nil || len(want) != abi.MeasurementSize {
		o.errs = append(o.errs, newError(ClassPolicy, "TrustedMeasurement", err, "reference measurement is not %d hex bytes", abi.MeasurementSize))
		return o
	}
	o.expect(snpMeasurement, hex.EncodeToString(want), bytes.Equal(rep.GetMeasurement(), want),
		newError(ClassMeasurement, snpMeasurement, nil, "launch measurement %x is not the trusted %x", rep.GetMeasurement(), want))
	refPolicy := abi.SnpPolicyToBytes(ref.GuestPolicy)
	polErr := snpPolicyAllowed(rep.GetPolicy(), ref.GuestPolicy)
	o.expect(snpPolicy, fmt.Sprintf("%016x", refPolicy), polErr == nil,
		newError(ClassMeasurement, snpPolicy, polErr, "guest policy %016x not allowed by reference policy %016x", rep.GetPolicy(), refPolicy))
	o.expect(snpVMPL, "00000000", rep.GetVmpl() == 0,
		newError(ClassMeasurement, snpVMPL, nil, "report is from VMPL %d; only VMPL 0 (the guest kernel) is accepted", rep.GetVmpl()))
	piErr := snpPlatformInfoAllowed(rep.GetPlatformInfo(), ref.PlatformInfo)
	o.expect(snpPlatformInfo, snpPlatformInfoString(ref.PlatformInfo), piErr == nil,
		newError(ClassMeasurement, snpPlatformInfo, piErr, "platform info %016x not allowed by the reference", rep.GetPlatformInfo()))
	checkSNPTCB(ev.Product, rep, ref.MinimumTCB, o)
	if v := ref.MinimumMitigationVector; v != 0 {
		for _, mv := range []struct {
			name string
			got  uint64
		}{{"LAUNCH_MIT_VECTOR", rep.GetLaunchMitVector()}, {"CURRENT_MIT_VECTOR", rep.GetCurrentMitVector()}} {
			if mv.got&v != v {
				o.errs = append(o.errs, newError(ClassTCB, mv.name, nil, "mitigation vector %016x lacks required bits %016x", mv.got, v&^mv.got))
			}
		}
	}
	if len(ref.AllowedChipIDs) > 0 {
		allowed := false
		for _, c := range ref.AllowedChipIDs {
			if id, err := hex.DecodeString(strings.TrimSpace(c)); err == nil && bytes.Equal(id, rep.GetChipId()) {
				allowed = true
			}
		}
		o.expect(snpChipID, "one of "+strings.Join(ref.AllowedChipIDs, ","), allowed,
			newError(ClassMeasurement, snpChipID, nil, "chip ID is not in the reference's %d allowed chip IDs", len(ref.AllowedChipIDs)))
	}
	if b.PolicyHash != nil {
		o.expect(snpHostData, hex.EncodeToString(b.PolicyHash[:]), bytes.Equal(rep.GetHostData(), b.PolicyHash[:]),
			newError(ClassMeasurement, snpHostData, nil, "HOST_DATA %x is not the coordinator policy hash %x", rep.GetHostData(), b.PolicyHash[:]))
	}
	var m48 [48]byte
	copy(m48[:], want)
	digest, derr := SNPIDKeyDigest(m48, ref.GuestPolicy)
	if derr != nil {
		o.errs = append(o.errs, derr)
	} else {
		o.expect(snpIDKeyDigest, hex.EncodeToString(digest[:]), bytes.Equal(rep.GetIdKeyDigest(), digest[:]),
			newError(ClassMeasurement, snpIDKeyDigest, nil, "ID_KEY_DIGEST does not match the ID block derived from the reference measurement and policy (launched without the expected ID block)"))
	}
	if b.ReportData != nil {
		o.expect(snpReportData, hex.EncodeToString(b.ReportData[:]), bytes.Equal(rep.GetReportData(), b.ReportData[:]),
			newError(ClassReportData, snpReportData, nil, "REPORT_DATA does not bind our nonce and the coordinator CAs"))
	}
	return o
}

// checkSNPTCB compares REPORTED, CURRENT and LAUNCH TCB per part with the
// minimum; a nil minimum part is not checked. Parts are read in the
// product's TCB_VERSION layout.
func checkSNPTCB(product string, rep *spb.Report, min SNPTCB, o *snpOutcome) {
	mins := map[string]*uint8{"bootloader": min.BootloaderVersion, "tee": min.TEEVersion, "snp": min.SNPVersion, "microcode": min.MicrocodeVersion}
	for _, kind := range []string{"REPORTED_TCB", "CURRENT_TCB", "LAUNCH_TCB"} {
		for _, p := range snpTCBValues(product, snpTCBOf(rep, kind)) {
			m := mins[p.name]
			if m == nil {
				continue
			}
			name := kind + "." + p.name
			o.tcbMin[name] = fmt.Sprint(*m)
			if p.value < *m {
				o.errs = append(o.errs, newError(ClassTCB, name, nil, "%s SPL %d is below the minimum %d; update the host firmware", name, p.value, *m))
			}
		}
	}
}

// snpPolicyAllowed treats the reference policy as the most the guest may
// allow (SMT, migration agent, CXL) and the least it must enforce (ABI
// version, single socket, AES-256-XTS, RAPL off, ciphertext hiding, no page
// swap). Debug is handled separately.
func snpPolicyAllowed(got uint64, ref abi.SnpPolicy) error {
	p, err := abi.ParseSnpPolicy(got)
	if err != nil {
		return err
	}
	var bad []string
	if p.ABIMajor < ref.ABIMajor || (p.ABIMajor == ref.ABIMajor && p.ABIMinor < ref.ABIMinor) {
		bad = append(bad, fmt.Sprintf("ABI %d.%d below %d.%d", p.ABIMajor, p.ABIMinor, ref.ABIMajor, ref.ABIMinor))
	}
	forbid := func(name string, has, allowed bool) {
		if has && !allowed {
			bad = append(bad, name+" not allowed")
		}
	}
	require := func(name string, has, required bool) {
		if required && !has {
			bad = append(bad, name+" required")
		}
	}
	forbid("SMT", p.SMT, ref.SMT)
	forbid("MigrateMA", p.MigrateMA, ref.MigrateMA)
	forbid("CXLAllowed", p.CXLAllowed, ref.CXLAllowed)
	require("SingleSocket", p.SingleSocket, ref.SingleSocket)
	require("MemAES256XTS", p.MemAES256XTS, ref.MemAES256XTS)
	require("RAPLDis", p.RAPLDis, ref.RAPLDis)
	require("CipherTextHidingDRAM", p.CipherTextHidingDRAM, ref.CipherTextHidingDRAM)
	require("PageSwapDisable", p.PageSwapDisable, ref.PageSwapDisable)
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// snpPlatformInfoAllowed: SMT and SEV-TIO only if the reference allows them
// (they widen the attack surface); TSME, ECC, RAPL off, ciphertext hiding and
// the BadRAM alias check are required when the reference requires them and
// harmless otherwise.
func snpPlatformInfoAllowed(got uint64, ref abi.SnpPlatformInfo) error {
	pi, err := abi.ParseSnpPlatformInfo(got)
	if err != nil {
		return err
	}
	var bad []string
	if pi.SMTEnabled && !ref.SMTEnabled {
		bad = append(bad, "SMT enabled")
	}
	if pi.TIOEnabled && !ref.TIOEnabled {
		bad = append(bad, "SEV-TIO enabled")
	}
	for _, r := range []struct {
		name          string
		has, required bool
	}{
		{"TSME", pi.TSMEEnabled, ref.TSMEEnabled},
		{"ECC", pi.ECCEnabled, ref.ECCEnabled},
		{"RAPL disabled", pi.RAPLDisabled, ref.RAPLDisabled},
		{"ciphertext hiding", pi.CiphertextHidingDRAMEnabled, ref.CiphertextHidingDRAMEnabled},
		{"alias check complete", pi.AliasCheckComplete, ref.AliasCheckComplete},
	} {
		if r.required && !r.has {
			bad = append(bad, r.name+" required")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// snpPlatformInfoString renders what a reference platform info allows.
func snpPlatformInfoString(ref abi.SnpPlatformInfo) string {
	return fmt.Sprintf("%+v", ref)
}
