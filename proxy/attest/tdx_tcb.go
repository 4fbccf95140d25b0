package attest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-tdx-guest/pcs"
)

// tdxTCBEval is the outcome of evaluating one TEE_TCB_SVN against the TCB
// info: the matching platform level and TDX module level.
type tdxTCBEval struct {
	level       pcs.TcbLevel
	levelOK     bool
	module      string // module status; UpToDate when the module is judged by the platform level
	moduleMin   string
	moduleID    string
	moduleAdv   []string
	moduleFound bool
}

// status combines platform and module as Intel's QVL does: an out-of-date
// (or revoked) TDX module makes the whole platform so.
func (e tdxTCBEval) status() string {
	if !e.levelOK {
		return tcbUnsupported
	}
	p := string(e.level.TcbStatus)
	switch e.module {
	case TCBRevoked, tcbUnsupported:
		return e.module
	case TCBOutOfDate:
		if strings.Contains(p, "ConfigurationNeeded") || p == TCBOutOfDateConfigurationNeeded {
			return TCBOutOfDateConfigurationNeeded
		}
		if p == TCBRevoked {
			return p
		}
		return TCBOutOfDate
	}
	return p
}

func (e tdxTCBEval) advisories() []string {
	return unionSorted(e.level.AdvisoryIDs, e.moduleAdv)
}

// evalTDXTCB matches tee (TEE_TCB_SVN or TEE_TCB_SVN2) against the levels.
func evalTDXTCB(info pcs.TcbInfo, ext *pcs.PckExtensions, tee []byte) tdxTCBEval {
	var e tdxTCBEval
	e.level, e.levelOK = matchTDXTCBLevel(info.TcbLevels, ext, tee)
	e.module = TCBUpToDate
	if len(tee) == 16 && tee[1] > 0 {
		e.moduleID = fmt.Sprintf("TDX_%02X", tee[1])
		e.module = tcbUnsupported
		if ml, found := matchTDXModuleLevel(info.TdxModuleIdentities, e.moduleID, uint32(tee[0])); found {
			e.module, e.moduleMin, e.moduleAdv, e.moduleFound = string(ml.TcbStatus), strconv.Itoa(int(ml.Tcb.Isvsvn)), ml.AdvisoryIDs, true
		}
	}
	return e
}

// checkForRelaunch is Intel's TDX 1.5 rule: a TD launched on a TDX module
// that is now out of date, on a platform whose current module is not, is
// advised to relaunch rather than judged out of date.
func checkForRelaunch(launch, current string) string {
	if launch != TCBOutOfDate && launch != TCBOutOfDateConfigurationNeeded {
		return launch
	}
	switch current {
	case TCBUpToDate, TCBSWHardeningNeeded:
		return TCBRelaunchAdvised
	case TCBConfigurationNeeded, TCBConfigurationAndSWHardeningNeeded:
		return TCBRelaunchAdvisedConfigurationNeeded
	}
	return launch
}

// checkTDXTCB evaluates the platform TCB against Intel's (already
// signature-verified) TCB info and QE identity the way Intel's quote
// verification does, records each component in res.TCB, and applies the
// operator's status policy (ClassTCB when it refuses). A quote that does not
// match the collateral's FMSPC, PCEID, TDX module or QE identity is
// ClassCollateral.
func checkTDXTCB(ev *TDXEvidence, col *tdxCollateral, policy TCBPolicy, res *Result) error {
	info := col.tcbInfo.TcbInfo
	if !hexEqual(info.Fmspc, ev.FMSPC) || !hexEqual(info.PceID, ev.PCEID) {
		return newError(ClassCollateral, "TDX TCB info", nil, "TCB info is for FMSPC %s / PCEID %s, the PCK certificate has %s / %s", info.Fmspc, info.PceID, ev.FMSPC, ev.PCEID)
	}
	if err := checkTDXModuleIdentity(ev, info); err != nil {
		return err
	}
	if err := checkQEIdentity(ev, col.qeIdentity.EnclaveIdentity); err != nil {
		return err
	}
	body := ev.Quote.GetTdQuoteBody()
	tee := body.GetTeeTcbSvn()
	ext := ev.pckExt

	launch := evalTDXTCB(info, ext, tee)
	status, advisories := launch.status(), launch.advisories()
	platform := TCBComponent{Name: "TDX TCB level", Actual: "no matching level", Status: tcbUnsupported}
	if launch.levelOK {
		platform.Actual = launch.level.TcbDate
		platform.Status = string(launch.level.TcbStatus)
		platform.Minimum = "TEE_TCB_SVN " + svnHex(launch.level.Tcb.TdxTcbcomponents)
	}
	ok := launch.levelOK
	res.TCB = append(res.TCB,
		TCBComponent{Name: "TEE_TCB_SVN", Actual: hex.EncodeToString(tee), Minimum: svnHexIf(ok, launch.level.Tcb.TdxTcbcomponents), Status: statusIf(ok)},
		TCBComponent{Name: "CPUSVN", Actual: hex.EncodeToString(ext.TCB.CPUSvnComponents), Minimum: svnHexIf(ok, launch.level.Tcb.SgxTcbcomponents), Status: statusIf(ok)},
		TCBComponent{Name: "PCESVN", Actual: strconv.Itoa(int(ext.TCB.PCESvn)), Minimum: pceIf(ok, launch.level.Tcb.Pcesvn), Status: statusIf(ok)},
		platform,
	)
	if launch.moduleID != "" {
		res.TCB = append(res.TCB, TCBComponent{Name: "TDX module " + launch.moduleID, Actual: strconv.Itoa(int(tee[0])), Minimum: launch.moduleMin, Status: launch.module})
	}
	// TDX 1.5 body: TEE_TCB_SVN2 is the module running now; after a
	// TD-preserving update it differs from the module the TD launched on.
	if ev.BodyType == tdxBodyTypeTD15 && len(ev.TeeTcbSvn2) == 16 && !bytes.Equal(ev.TeeTcbSvn2, make([]byte, 16)) && !bytes.Equal(ev.TeeTcbSvn2, tee) {
		cur := evalTDXTCB(info, ext, ev.TeeTcbSvn2)
		res.TCB = append(res.TCB, TCBComponent{Name: "TEE_TCB_SVN2 (module running now)", Actual: hex.EncodeToString(ev.TeeTcbSvn2), Status: cur.status()})
		status = checkForRelaunch(status, cur.status())
		advisories = unionSorted(advisories, cur.advisories())
	}

	qe := ev.Quote.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()
	qc := TCBComponent{Name: "QE identity", Actual: strconv.Itoa(int(qe.GetIsvSvn())), Status: tcbUnsupported}
	var qeAdv []string
	for _, l := range col.qeIdentity.EnclaveIdentity.TcbLevels {
		if l.Tcb.Isvsvn <= qe.GetIsvSvn() {
			qc.Status = string(l.TcbStatus)
			qc.Minimum = strconv.Itoa(int(l.Tcb.Isvsvn))
			qeAdv = l.AdvisoryIDs
			break
		}
	}
	res.TCB = append(res.TCB, qc)
	advisories = unionSorted(advisories, qeAdv)
	res.TCBStatus, res.TCBAdvisories = status, advisories

	if status == tcbUnsupported || status == TCBRevoked {
		return newError(ClassTCB, "TDX TCB level", nil, "platform TCB is %s for FMSPC %s: no TCB level of Intel's TCB info covers it, or it is revoked", status, ev.FMSPC)
	}
	if qc.Status == tcbUnsupported || qc.Status == TCBRevoked {
		return newError(ClassTCB, "QE identity", nil, "quoting enclave ISVSVN %s is %s", qc.Actual, qc.Status)
	}
	var accepted []string
	for _, c := range []struct{ field, status string }{{"TDX TCB level", status}, {"QE identity", qc.Status}} {
		d, err := policy.tdxDecision(c.status, advisories)
		if err != nil {
			return newError(ClassTCB, c.field, err, "%s", c.field)
		}
		if d != "" {
			accepted = append(accepted, c.field+": "+d)
		}
	}
	res.TCBAcceptedBy = strings.Join(accepted, "; ")
	return nil
}

// checkTDXModuleIdentity checks MRSIGNERSEAM and SEAMATTRIBUTES against the
// TDX module (identity) the TCB info names for this module version.
func checkTDXModuleIdentity(ev *TDXEvidence, info pcs.TcbInfo) error {
	body := ev.Quote.GetTdQuoteBody()
	signer, attrs, mask := info.TdxModule.Mrsigner.Bytes, info.TdxModule.Attributes.Bytes, info.TdxModule.AttributesMask.Bytes
	name := "tdxModule"
	if tee := body.GetTeeTcbSvn(); len(tee) == 16 && tee[1] > 0 && len(info.TdxModuleIdentities) > 0 {
		id := fmt.Sprintf("TDX_%02X", tee[1])
		found := false
		for _, m := range info.TdxModuleIdentities {
			if strings.EqualFold(m.ID, id) {
				signer, attrs, mask, name, found = m.Mrsigner.Bytes, m.Attributes.Bytes, m.AttributesMask.Bytes, m.ID, true
				break
			}
		}
		if !found {
			return newError(ClassTCB, "TDX module", nil, "Intel's TCB info names no TDX module identity %s for this quote's module", id)
		}
	}
	if !bytes.Equal(signer, body.GetMrSignerSeam()) {
		return newError(ClassCollateral, "MRSIGNERSEAM", nil, "MRSIGNERSEAM %x is not the TDX module signer %x of %s in Intel's TCB info", body.GetMrSignerSeam(), signer, name)
	}
	if !maskedEqual(body.GetSeamAttributes(), attrs, mask) {
		return newError(ClassCollateral, "SEAMATTRIBUTES", nil, "SEAMATTRIBUTES %x do not match %s (attributes %x, mask %x)", body.GetSeamAttributes(), name, attrs, mask)
	}
	return nil
}

// checkQEIdentity checks the quoting enclave's report against Intel's
// TD_QE identity: MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under mask.
func checkQEIdentity(ev *TDXEvidence, id pcs.EnclaveIdentity) error {
	qe := ev.Quote.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()
	misc := make([]byte, 4)
	binary.LittleEndian.PutUint32(misc, qe.GetMiscSelect())
	switch {
	case !bytes.Equal(qe.GetMrSigner(), id.Mrsigner.Bytes):
		return newError(ClassCollateral, "QE identity", nil, "QE MRSIGNER %x is not Intel's TD QE signer %x", qe.GetMrSigner(), id.Mrsigner.Bytes)
	case qe.GetIsvProdId() != uint32(id.IsvProdID):
		return newError(ClassCollateral, "QE identity", nil, "QE ISVPRODID %d is not Intel's TD QE %d", qe.GetIsvProdId(), id.IsvProdID)
	case !maskedEqual(misc, id.Miscselect.Bytes, id.MiscselectMask.Bytes):
		return newError(ClassCollateral, "QE identity", nil, "QE MISCSELECT %x does not match Intel's TD QE identity", misc)
	case !maskedEqual(qe.GetAttributes(), id.Attributes.Bytes, id.AttributesMask.Bytes):
		return newError(ClassCollateral, "QE identity", nil, "QE ATTRIBUTES %x do not match Intel's TD QE identity", qe.GetAttributes())
	}
	return nil
}

// maskedEqual reports whether got & mask == want (Intel's rule), all three
// the same length.
func maskedEqual(got, want, mask []byte) bool {
	if len(got) != len(mask) || len(want) != len(mask) {
		return false
	}
	for i := range mask {
		if got[i]&mask[i] != want[i] {
			return false
		}
	}
	return true
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
		if !strings.EqualFold(m.ID, id) {
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
