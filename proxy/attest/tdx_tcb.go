package attest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-tdx-guest/pcs"
)

// checkTDXTCB evaluates the platform TCB against Intel's TCB info and QE
// identity the way Intel's quote verification does, records each component
// in res.TCB, and rejects anything that is not UpToDate (ClassTCB). We do it
// ourselves rather than rely on the library so the status and the
// advisories reach the Result instead of an opaque error string.
func checkTDXTCB(ev *TDXEvidence, col *tdxCollateral, res *Result) error {
	info := col.tcbInfo.TcbInfo
	if info.Fmspc != ev.FMSPC || info.PceID != ev.PCEID {
		return newError(ClassCollateral, "TDX TCB info", nil, "TCB info is for FMSPC %s / PCEID %s, the PCK certificate has %s / %s", info.Fmspc, info.PceID, ev.FMSPC, ev.PCEID)
	}
	body := ev.Quote.GetTdQuoteBody()
	tee := body.GetTeeTcbSvn()
	ext := ev.pckExt

	level, ok := matchTDXTCBLevel(info.TcbLevels, ext, tee)
	platform := TCBComponent{Name: "TDX TCB level", Actual: "no matching level", Status: "Unsupported"}
	if ok {
		platform.Actual = level.TcbDate
		platform.Status = string(level.TcbStatus)
		platform.Minimum = "TEE_TCB_SVN " + svnHex(level.Tcb.TdxTcbcomponents)
	}
	res.TCB = append(res.TCB,
		TCBComponent{Name: "TEE_TCB_SVN", Actual: hex.EncodeToString(tee), Minimum: svnHexIf(ok, level.Tcb.TdxTcbcomponents), Status: statusIf(ok)},
		TCBComponent{Name: "CPUSVN", Actual: hex.EncodeToString(ext.TCB.CPUSvnComponents), Minimum: svnHexIf(ok, level.Tcb.SgxTcbcomponents), Status: statusIf(ok)},
		TCBComponent{Name: "PCESVN", Actual: strconv.Itoa(int(ext.TCB.PCESvn)), Minimum: pceIf(ok, level.Tcb.Pcesvn), Status: statusIf(ok)},
		platform,
	)

	module := "UpToDate"
	if tee[1] > 0 {
		id := fmt.Sprintf("TDX_%02x", tee[1])
		mc := TCBComponent{Name: "TDX module " + id, Actual: strconv.Itoa(int(tee[0])), Status: "Unsupported"}
		if ml, found := matchTDXModuleLevel(info.TdxModuleIdentities, id, uint32(tee[0])); found {
			mc.Status = string(ml.TcbStatus)
			mc.Minimum = strconv.Itoa(int(ml.Tcb.Isvsvn))
		}
		module = mc.Status
		res.TCB = append(res.TCB, mc)
	}

	qe := ev.Quote.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()
	qc := TCBComponent{Name: "QE identity", Actual: strconv.Itoa(int(qe.GetIsvSvn())), Status: "Unsupported"}
	for _, l := range col.qeIdentity.EnclaveIdentity.TcbLevels {
		if l.Tcb.Isvsvn <= qe.GetIsvSvn() {
			qc.Status = string(l.TcbStatus)
			qc.Minimum = strconv.Itoa(int(l.Tcb.Isvsvn))
			break
		}
	}
	res.TCB = append(res.TCB, qc)

	if platform.Status != string(pcs.TcbComponentStatusUpToDate) {
		adv := ""
		if ok && len(level.AdvisoryIDs) > 0 {
			adv = " (advisories " + strings.Join(level.AdvisoryIDs, ", ") + ")"
		}
		return newError(ClassTCB, "TDX TCB level", nil, "platform TCB status is %s%s; the host needs a firmware/TDX module update", platform.Status, adv)
	}
	if module != string(pcs.TcbComponentStatusUpToDate) {
		return newError(ClassTCB, "TDX module", nil, "TDX module TCB status is %s", module)
	}
	if qc.Status != string(pcs.TcbComponentStatusUpToDate) {
		return newError(ClassTCB, "QE identity", nil, "quoting enclave TCB status is %s (ISVSVN %s)", qc.Status, qc.Actual)
	}
	return nil
}

// matchTDXTCBLevel returns the first (highest) level the platform meets:
// every CPUSVN component, PCESVN and TEE_TCB_SVN component at least the
// level's. When TEE_TCB_SVN[1] (the TDX module major version) is set, its
// first two bytes are judged by the module identity instead.
func matchTDXTCBLevel(levels []pcs.TcbLevel, ext *pcs.PckExtensions, tee []byte) (pcs.TcbLevel, bool) {
	for _, l := range levels {
		if len(l.Tcb.SgxTcbcomponents) != 16 || len(l.Tcb.TdxTcbcomponents) != 16 || len(tee) != 16 {
			continue
		}
		ok := ext.TCB.PCESvn >= l.Tcb.Pcesvn
		for i := 0; ok && i < 16; i++ {
			ok = ext.TCB.CPUSvnComponents[i] >= l.Tcb.SgxTcbcomponents[i].Svn
		}
		start := 0
		if tee[1] > 0 {
			start = 2
		}
		for i := start; ok && i < 16; i++ {
			ok = tee[i] >= l.Tcb.TdxTcbcomponents[i].Svn
		}
		if ok {
			return l, true
		}
	}
	return pcs.TcbLevel{}, false
}

func matchTDXModuleLevel(ids []pcs.TdxModuleIdentity, id string, isvsvn uint32) (pcs.TcbLevel, bool) {
	for _, m := range ids {
		if m.ID != id {
			continue
		}
		for _, l := range m.TcbLevels {
			if isvsvn >= l.Tcb.Isvsvn {
				return l, true
			}
		}
	}
	return pcs.TcbLevel{}, false
}

func svnHex(cs []pcs.TcbComponent) string {
	b := make([]byte, len(cs))
	for i, c := range cs {
		b[i] = c.Svn
	}
	return hex.EncodeToString(b)
}

func svnHexIf(ok bool, cs []pcs.TcbComponent) string {
	if !ok {
		return ""
	}
	return svnHex(cs)
}

func pceIf(ok bool, v uint16) string {
	if !ok {
		return ""
	}
	return strconv.Itoa(int(v))
}

func statusIf(ok bool) string {
	if ok {
		return "ok"
	}
	return "below every TCB level"
}

// le16 reads a 2-byte little-endian SVN from the quote header.
func le16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}
