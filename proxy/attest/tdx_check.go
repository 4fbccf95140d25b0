package attest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// tdDebugBit is TD_ATTRIBUTES bit 0 (little-endian): the TD's memory and
// registers are readable by the host.
const tdDebugBit = 0x01

// defaultTdAttributes is what TD_ATTRIBUTES must be when the reference does
// not pin it, as in Contrast: SEPT_VE_DISABLE (bit 28) alone, little-endian.
// Any other bit (debug, PKS, KL, PERFMON, ...) widens what the host or the
// TD may do, so an unpinned reference must not silently accept it.
const defaultTdAttributes = "0000001000000000"

// xfamHostVaryingMask are the XFAM bits compared loosely: bit 11 (CET_U,
// user-mode CET state) and bit 12 (CET_S, supervisor CET state). Hosts
// enable CET state components for a TD depending on the host kernel and VMM
// version, not on anything the TD's code controls; Contrast's reference
// values leave them out for this reason. Every other bit (AVX-512, AMX, PKRU,
// ...) must equal the reference.
const xfamHostVaryingMask uint64 = 1<<11 | 1<<12

// xfamMatches compares 8-byte little-endian XFAM values outside the mask.
func xfamMatches(actual, ref []byte) bool {
	if len(actual) != 8 || len(ref) != 8 {
		return false
	}
	a, r := binary.LittleEndian.Uint64(actual), binary.LittleEndian.Uint64(ref)
	return a&^xfamHostVaryingMask == r&^xfamHostVaryingMask
}

// tdAttributesRef is the TD_ATTRIBUTES value ref requires.
func tdAttributesRef(ref TDXReference) string {
	if ref.TdAttributes != "" {
		return ref.TdAttributes
	}
	return defaultTdAttributes
}

// CheckTDX checks the quote's measurements and binding against the reference
// values; it accepts when any entry of refs matches and otherwise returns the
// failure for refs[0]. It fills res (Expected/Match of the chosen entry).
// An unpinned TdAttributes means SEPT_VE_DISABLE only, and MemoryIntegrity,
// SMTDisabled and StaticPlatform must be stated by the PCK leaf (fail closed).
func CheckTDX(ev *TDXEvidence, refs []TDXReference, b Binding, res *Result) error {
	if ev == nil || ev.Quote == nil {
		return res.reject(newError(ClassMalformed, "tdx", nil, "no parsed TDX evidence"))
	}
	if len(refs) == 0 {
		return res.reject(newError(ClassPolicy, "ReferenceValues.tdx", nil, "no TDX reference values to check against"))
	}
	setTDXMeasurements(res, ev)
	var first error
	for i, ref := range refs {
		err := checkTDXRef(ev, ref, b)
		if err == nil {
			recordTDXExpected(res, ev, ref, b)
			res.addCheck("TDX reference values", true, fmt.Sprintf("matches reference %d of %d", i+1, len(refs)))
			return nil
		}
		if first == nil {
			first = err
		}
	}
	recordTDXExpected(res, ev, refs[0], b)
	res.addCheck("TDX reference values", false, first.Error())
	return res.reject(first)
}

// checkTDXRef checks one reference entry. Debug comes first and is never
// allowed: a debug TD exposes its memory to the host whatever the reference
// values say.
func checkTDXRef(ev *TDXEvidence, ref TDXReference, b Binding) error {
	body := ev.Quote.GetTdQuoteBody()
	if attrs := body.GetTdAttributes(); len(attrs) > 0 && attrs[0]&tdDebugBit != 0 {
		return newError(ClassDebug, "TD_ATTRIBUTES", nil, "the TD runs in debug mode (TD_ATTRIBUTES %x); never accepted", attrs)
	}
	if err := ref.validate(); err != nil {
		return newError(ClassPolicy, "ReferenceValues.tdx", err, "invalid TDX reference values")
	}
	type pin struct {
		name   string
		want   string
		actual []byte
	}
	pins := []pin{
		{"MRTD", ref.MrTd, body.GetMrTd()},
		{"MRSEAM", ref.MrSeam, body.GetMrSeam()},
	}
	for i := range 4 {
		pins = append(pins, pin{fmt.Sprintf("RTMR[%d]", i), ref.Rtmrs[i], rtmr(body.GetRtmrs(), i)})
	}
	pins = append(pins, pin{"TD_ATTRIBUTES", tdAttributesRef(ref), body.GetTdAttributes()})
	for _, p := range pins {
		if !bytes.Equal(mustHex(p.want), p.actual) {
			return newError(ClassMeasurement, p.name, nil, "%s is %x, the reference value is %s", p.name, p.actual, strings.ToLower(p.want))
		}
	}
	if !xfamMatches(body.GetXfam(), mustHex(ref.Xfam)) {
		return newError(ClassMeasurement, "XFAM", nil, "XFAM is %x, the reference value is %s (only the CET_U/CET_S bits may differ)", body.GetXfam(), strings.ToLower(ref.Xfam))
	}
	if sd := ev.MrServiceTD; len(sd) > 0 && !bytes.Equal(sd, make([]byte, len(sd))) {
		return newError(ClassMeasurement, "MR_SERVICETD", nil, "a service TD (MR_SERVICETD %x) is bound to this TD and may access it; not accepted", sd)
	}
	if b.PolicyHash != nil {
		want := policyConfigID(b.PolicyHash)
		if !bytes.Equal(want, body.GetMrConfigId()) {
			return newError(ClassMeasurement, "MRCONFIGID", nil, "MRCONFIGID is %x, want the coordinator policy hash %x zero-padded to 48 bytes", body.GetMrConfigId(), b.PolicyHash[:])
		}
	}
	if ref.MinimumTeeTcbSvn != "" {
		min, tee := mustHex(ref.MinimumTeeTcbSvn), body.GetTeeTcbSvn()
		for i := range min {
			if i >= len(tee) || tee[i] < min[i] {
				return newError(ClassTCB, "TEE_TCB_SVN", nil, "TEE_TCB_SVN %x is below the minimum %x (component %d)", tee, min, i)
			}
		}
	}
	h := ev.Quote.GetHeader()
	if ref.MinimumQeSvn != nil && le16(h.GetQeSvn()) < *ref.MinimumQeSvn {
		return newError(ClassTCB, "QE_SVN", nil, "QE SVN %d is below the minimum %d", le16(h.GetQeSvn()), *ref.MinimumQeSvn)
	}
	if ref.MinimumPceSvn != nil && le16(h.GetPceSvn()) < *ref.MinimumPceSvn {
		return newError(ClassTCB, "PCE_SVN", nil, "PCE SVN %d is below the minimum %d", le16(h.GetPceSvn()), *ref.MinimumPceSvn)
	}
	if ref.MinTCBEvaluationDataNumber > 0 && ev.TCBEvaluationDataNumber < ref.MinTCBEvaluationDataNumber {
		if ev.TCBEvaluationDataNumber == 0 {
			return newError(ClassTCB, "TCBEvaluationDataNumber", nil, "the reference requires TCB evaluation data number %d but no TCB info was checked", ref.MinTCBEvaluationDataNumber)
		}
		return newError(ClassTCB, "TCBEvaluationDataNumber", nil, "TCB info evaluation data number %d is below the minimum %d", ev.TCBEvaluationDataNumber, ref.MinTCBEvaluationDataNumber)
	}
	if len(ref.AllowedPIIDs) > 0 && !slices.ContainsFunc(ref.AllowedPIIDs, func(p string) bool { return strings.EqualFold(p, ev.PIID) }) {
		return newError(ClassMeasurement, "PIID", nil, "platform instance ID %q is not in the allowed list", ev.PIID)
	}
	if err := checkPCKPlatform(ev, ref); err != nil {
		return err
	}
	if b.ReportData != nil && !bytes.Equal(b.ReportData[:], body.GetReportData()) {
		return newError(ClassReportData, "REPORT_DATA", nil, "REPORT_DATA does not bind our nonce and the coordinator CAs")
	}
	return nil
}

func rtmr(rs [][]byte, i int) []byte {
	if i < len(rs) {
		return rs[i]
	}
	return nil
}

// policyConfigID is the MRCONFIGID a Contrast coordinator with this policy
// hash has: the hash zero-padded to 48 bytes.
func policyConfigID(h *[32]byte) []byte {
	out := make([]byte, 48)
	copy(out, h[:])
	return out
}

// recordTDXExpected fills Expected/Match for the values ref and b pin.
func recordTDXExpected(res *Result, ev *TDXEvidence, ref TDXReference, b Binding) {
	body := ev.Quote.GetTdQuoteBody()
	pinHex := func(name, want string, actual []byte) {
		if want == "" {
			return
		}
		setExpected(res, name, strings.ToLower(want), bytes.Equal(mustHex(want), actual))
	}
	pinHex("MRTD", ref.MrTd, body.GetMrTd())
	pinHex("MRSEAM", ref.MrSeam, body.GetMrSeam())
	for i := range 4 {
		pinHex("RTMR["+strconv.Itoa(i)+"]", ref.Rtmrs[i], rtmr(body.GetRtmrs(), i))
	}
	if ref.Xfam != "" {
		setExpected(res, "XFAM", strings.ToLower(ref.Xfam)+" (CET_U/CET_S ignored)", xfamMatches(body.GetXfam(), mustHex(ref.Xfam)))
	}
	pinHex("TD_ATTRIBUTES", tdAttributesRef(ref), body.GetTdAttributes())
	recordPCKExpected(res, ev, ref)
	if b.PolicyHash != nil {
		want := policyConfigID(b.PolicyHash)
		setExpected(res, "MRCONFIGID", hex.EncodeToString(want), bytes.Equal(want, body.GetMrConfigId()))
	}
	if ref.MinimumTeeTcbSvn != "" {
		min, tee := mustHex(ref.MinimumTeeTcbSvn), body.GetTeeTcbSvn()
		ok := len(min) == len(tee)
		for i := 0; ok && i < len(min); i++ {
			ok = tee[i] >= min[i]
		}
		setExpected(res, "TEE_TCB_SVN", ">= "+strings.ToLower(ref.MinimumTeeTcbSvn), ok)
	}
	if b.ReportData != nil {
		setExpected(res, "REPORT_DATA", hex.EncodeToString(b.ReportData[:]), bytes.Equal(b.ReportData[:], body.GetReportData()))
	}
}
