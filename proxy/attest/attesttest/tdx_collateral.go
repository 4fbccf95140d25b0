package attesttest

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-tdx-guest/pcs"
)

// Intel PCS JSON shapes, written with hex strings where the library's pcs
// types (decode-only) would marshal raw bytes.
type (
	tdxSvn struct {
		Svn byte `json:"svn"`
	}
	tdxTcb struct {
		Sgx    []tdxSvn `json:"sgxtcbcomponents,omitempty"`
		Pcesvn *uint16  `json:"pcesvn,omitempty"`
		Tdx    []tdxSvn `json:"tdxtcbcomponents,omitempty"`
		Isvsvn *uint32  `json:"isvsvn,omitempty"`
	}
	tdxLevel struct {
		Tcb       tdxTcb `json:"tcb"`
		TcbDate   string `json:"tcbDate"`
		TcbStatus string `json:"tcbStatus"`
	}
	tdxModuleJSON struct {
		ID             string     `json:"id,omitempty"`
		Mrsigner       string     `json:"mrsigner"`
		Attributes     string     `json:"attributes"`
		AttributesMask string     `json:"attributesMask"`
		TcbLevels      []tdxLevel `json:"tcbLevels,omitempty"`
	}
	tdxTcbInfoJSON struct {
		ID                      string          `json:"id"`
		Version                 int             `json:"version"`
		IssueDate               string          `json:"issueDate"`
		NextUpdate              string          `json:"nextUpdate"`
		Fmspc                   string          `json:"fmspc"`
		PceID                   string          `json:"pceId"`
		TcbType                 int             `json:"tcbType"`
		TcbEvaluationDataNumber int             `json:"tcbEvaluationDataNumber"`
		TdxModule               tdxModuleJSON   `json:"tdxModule"`
		TdxModuleIdentities     []tdxModuleJSON `json:"tdxModuleIdentities"`
		TcbLevels               []tdxLevel      `json:"tcbLevels"`
	}
	tdxQeIdentityJSON struct {
		ID                      string     `json:"id"`
		Version                 int        `json:"version"`
		IssueDate               string     `json:"issueDate"`
		NextUpdate              string     `json:"nextUpdate"`
		TcbEvaluationDataNumber int        `json:"tcbEvaluationDataNumber"`
		Miscselect              string     `json:"miscselect"`
		MiscselectMask          string     `json:"miscselectMask"`
		Attributes              string     `json:"attributes"`
		AttributesMask          string     `json:"attributesMask"`
		Mrsigner                string     `json:"mrsigner"`
		IsvProdID               uint32     `json:"isvprodid"`
		TcbLevels               []tdxLevel `json:"tcbLevels"`
	}
)

// TDXTCBEvaluationDataNumber is the evaluation data number the authority's
// TCB info and QE identity carry.
const TDXTCBEvaluationDataNumber = 17

// Collateral returns TCB info, QE identity, PCK CRL and root CRL signed by
// the authority, keyed by the real Intel PCS URLs. The single TCB level sits
// at the default quote's TEE_TCB_SVN and the PCK's CPUSVN/PCESVN, so quotes
// from DefaultTDXQuoteOptions (or higher SVNs) match it.
func (a *TDXAuthority) Collateral(o TDXCollateralOptions) (map[string]Response, error) {
	issued := o.IssuedAt
	if issued.IsZero() {
		issued = a.now
	}
	issued = issued.UTC().Truncate(time.Second)
	next := issued.Add(30 * 24 * time.Hour)
	status := o.TCBStatus
	if status == "" {
		status = string(pcs.TcbComponentStatusUpToDate)
	}
	const ts = "2006-01-02T15:04:05Z"
	date := issued.Format(ts)

	body := a.tmpl.GetTdQuoteBody()
	sgx := make([]tdxSvn, 16)
	for i, v := range a.ext.TCB.CPUSvnComponents {
		sgx[i] = tdxSvn{v}
	}
	tdx := make([]tdxSvn, 16)
	for i, v := range body.GetTeeTcbSvn() {
		tdx[i] = tdxSvn{v}
	}
	pce := a.ext.TCB.PCESvn
	seamAttr := body.GetSeamAttributes()
	mask := strings.Repeat("ff", len(seamAttr))
	var modules []tdxModuleJSON
	for v := 1; v <= 5; v++ {
		zero := uint32(0)
		modules = append(modules, tdxModuleJSON{
			ID: fmt.Sprintf("TDX_%02x", v), Mrsigner: hex.EncodeToString(body.GetMrSignerSeam()),
			Attributes: hex.EncodeToString(seamAttr), AttributesMask: mask,
			TcbLevels: []tdxLevel{{Tcb: tdxTcb{Isvsvn: &zero}, TcbDate: date, TcbStatus: status}},
		})
	}
	info := tdxTcbInfoJSON{
		ID: "TDX", Version: 3, IssueDate: date, NextUpdate: next.Format(ts),
		Fmspc: a.ext.FMSPC, PceID: a.ext.PCEID, TcbEvaluationDataNumber: TDXTCBEvaluationDataNumber,
		TdxModule: tdxModuleJSON{
			Mrsigner:   hex.EncodeToString(body.GetMrSignerSeam()),
			Attributes: hex.EncodeToString(seamAttr), AttributesMask: mask,
		},
		TdxModuleIdentities: modules,
		TcbLevels:           []tdxLevel{{Tcb: tdxTcb{Sgx: sgx, Pcesvn: &pce, Tdx: tdx}, TcbDate: date, TcbStatus: status}},
	}
	tcbBody, err := a.signedJSON("tcbInfo", info)
	if err != nil {
		return nil, err
	}

	qe := a.tmpl.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()
	misc := make([]byte, 4)
	binary.LittleEndian.PutUint32(misc, qe.GetMiscSelect())
	isv := qe.GetIsvSvn()
	qeID := tdxQeIdentityJSON{
		ID: "TD_QE", Version: 2, IssueDate: date, NextUpdate: next.Format(ts),
		TcbEvaluationDataNumber: TDXTCBEvaluationDataNumber,
		Miscselect:              hex.EncodeToString(misc), MiscselectMask: "ffffffff",
		Attributes: hex.EncodeToString(qe.GetAttributes()), AttributesMask: strings.Repeat("ff", len(qe.GetAttributes())),
		Mrsigner: hex.EncodeToString(qe.GetMrSigner()), IsvProdID: qe.GetIsvProdId(),
		TcbLevels: []tdxLevel{{Tcb: tdxTcb{Isvsvn: &isv}, TcbDate: date, TcbStatus: status}},
	}
	qeBody, err := a.signedJSON("enclaveIdentity", qeID)
	if err != nil {
		return nil, err
	}

	var revoked []x509.RevocationListEntry
	if o.RevokePCK {
		revoked = append(revoked, x509.RevocationListEntry{SerialNumber: a.pck.SerialNumber, RevocationTime: issued})
	}
	pckCRL, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: issued, NextUpdate: next, RevokedCertificateEntries: revoked,
	}, a.inter, a.interKey)
	if err != nil {
		return nil, fmt.Errorf("PCK CRL: %w", err)
	}
	rootCRL, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: issued, NextUpdate: next,
	}, a.root, a.rootKey)
	if err != nil {
		return nil, fmt.Errorf("root CRL: %w", err)
	}

	tcbChain := url.QueryEscape(string(append(tdxPEM(a.tcb), tdxPEM(a.root)...)))
	pckChain := url.QueryEscape(string(append(tdxPEM(a.inter), tdxPEM(a.root)...)))
	hdr := func(k, v string) http.Header {
		h := http.Header{}
		h.Set(k, v)
		return h
	}
	return map[string]Response{
		pcs.TcbInfoURL(a.ext.FMSPC): {Header: hdr("Tcb-Info-Issuer-Chain", tcbChain), Body: tcbBody},
		pcs.QeIdentityURL():         {Header: hdr("Sgx-Enclave-Identity-Issuer-Chain", tcbChain), Body: qeBody},
		pcs.PckCrlURL("platform"):   {Header: hdr("Sgx-Pck-Crl-Issuer-Chain", pckChain), Body: pckCRL},
		IntelRootCRLURL:             {Header: http.Header{}, Body: rootCRL},
	}, nil
}

// signedJSON wraps v as {"<field>": v, "signature": hex(r‖s)}, signing the
// exact bytes of v as Intel does.
func (a *TDXAuthority) signedJSON(field string, v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", field, err)
	}
	sig, err := tdxRawSign(a.tcbKey, raw)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"%s":%s,"signature":"%s"}`, field, raw, hex.EncodeToString(sig)), nil
}
