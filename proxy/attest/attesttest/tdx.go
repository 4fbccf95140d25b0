package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"
	"google.golang.org/protobuf/proto"
)

// IntelRootCRLURL is the Intel SGX Root CA CRL URL; the test root names it as
// its CRL distribution point so collateral is keyed exactly like Intel's.
const IntelRootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

// TDXAuthority is a throwaway Intel PCK hierarchy (root, PCK Platform CA, PCK
// leaf, TCB signing cert) plus a quoting-enclave attestation key, all ECDSA
// P-256. Its quotes verify only against RootPool, never the real Intel root.
// Safe for concurrent use.
type TDXAuthority struct {
	now                       time.Time
	rootKey, interKey, pckKey *ecdsa.PrivateKey
	tcbKey, attKey            *ecdsa.PrivateKey
	root, inter, pck, tcb     *x509.Certificate
	chainPEM                  []byte
	attPub                    []byte // X‖Y of the attestation key
	tmpl                      *tdxpb.QuoteV4
	ext                       *pcs.PckExtensions
}

// TDXQuoteOptions are the TD values a test quote reports, used verbatim
// (zero means zero). DefaultTDXQuoteOptions gives values that match the
// authority's collateral.
type TDXQuoteOptions struct {
	ReportData               [64]byte
	MrTd, MrSeam, MrConfigID [48]byte
	MrOwner                  [48]byte
	Rtmrs                    [4][48]byte
	TdAttributes, Xfam       [8]byte
	TeeTcbSvn                [16]byte
}

// Response is one stored PCS response: headers as Intel sends them and the body.
type Response struct {
	Header http.Header
	Body   []byte
}

// TDXCollateralOptions shapes the collateral: when it was issued (zero means
// the authority's creation time; nextUpdate is 30 days later), whether the
// PCK leaf is revoked, and the TCB status of the single TCB level and QE
// level (zero means "UpToDate").
type TDXCollateralOptions struct {
	IssuedAt  time.Time
	RevokePCK bool
	TCBStatus string
}

var tdxSample = sync.OnceValues(func() (*tdxpb.QuoteV4, error) {
	v, err := abi.QuoteToProto(testdata.RawQuote)
	if err != nil {
		return nil, fmt.Errorf("parse go-tdx-guest sample quote: %w", err)
	}
	q, ok := v.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("sample quote is %T, want QuoteV4", v)
	}
	return q, nil
})

// tdxSampleLeaf returns the real PCK leaf of the sample quote: its SGX
// extension is the one thing we cannot easily synthesise.
func tdxSampleLeaf(q *tdxpb.QuoteV4) (*x509.Certificate, error) {
	b := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("sample quote has no PEM PCK leaf")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// DefaultTDXQuoteOptions returns the sample quote's TD values (a non-debug
// TD whose TEE_TCB_SVN meets the authority's TCB level) with reportData.
// Its TD_ATTRIBUTES is 0000004000000000 (PKS), which a reference without
// TdAttributes rejects: such a reference demands SEPT_VE_DISABLE alone.
func DefaultTDXQuoteOptions(reportData [64]byte) TDXQuoteOptions {
	o := TDXQuoteOptions{ReportData: reportData}
	q, err := tdxSample()
	if err != nil {
		return o
	}
	b := q.GetTdQuoteBody()
	copy(o.MrTd[:], b.GetMrTd())
	copy(o.MrSeam[:], b.GetMrSeam())
	copy(o.MrConfigID[:], b.GetMrConfigId())
	copy(o.MrOwner[:], b.GetMrOwner())
	for i := range o.Rtmrs {
		copy(o.Rtmrs[i][:], b.GetRtmrs()[i])
	}
	copy(o.TdAttributes[:], b.GetTdAttributes())
	copy(o.Xfam[:], b.GetXfam())
	copy(o.TeeTcbSvn[:], b.GetTeeTcbSvn())
	return o
}

// NewTDXAuthority creates the hierarchy with certificates valid from a day
// before now for ten years.
func NewTDXAuthority(now time.Time) (*TDXAuthority, error) {
	q, err := tdxSample()
	if err != nil {
		return nil, err
	}
	leaf, err := tdxSampleLeaf(q)
	if err != nil {
		return nil, err
	}
	ext, err := pcs.PckCertificateExtensions(leaf)
	if err != nil {
		return nil, fmt.Errorf("sample PCK extensions: %w", err)
	}
	var sgx []byte
	for _, e := range leaf.Extensions {
		if e.Id.Equal(pcs.OidSgxExtension) {
			sgx = e.Value
		}
	}
	a := &TDXAuthority{now: now, tmpl: q, ext: ext}
	for _, k := range []**ecdsa.PrivateKey{&a.rootKey, &a.interKey, &a.pckKey, &a.tcbKey, &a.attKey} {
		if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
	}
	name := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"duo-confidential test only"}}
	}
	from, to := now.Add(-24*time.Hour), now.AddDate(10, 0, 0)
	ca := func(serial int64, cn string, pathLen int, crl string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: name(cn), NotBefore: from, NotAfter: to,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
			MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0, CRLDistributionPoints: []string{crl},
		}
	}
	if a.root, err = tdxIssue(ca(1, "Intel SGX Root CA", 1, IntelRootCRLURL), nil, nil, a.rootKey); err != nil {
		return nil, err
	}
	if a.inter, err = tdxIssue(ca(2, "Intel SGX PCK Platform CA", 0, IntelRootCRLURL), a.root, &a.interKey.PublicKey, a.rootKey); err != nil {
		return nil, err
	}
	if err := a.issuePCK(sgx); err != nil {
		return nil, err
	}
	tcbT := &x509.Certificate{
		SerialNumber: big.NewInt(4), Subject: name("Intel SGX TCB Signing"), NotBefore: from, NotAfter: to,
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		CRLDistributionPoints: []string{IntelRootCRLURL},
	}
	if a.tcb, err = tdxIssue(tcbT, a.root, &a.tcbKey.PublicKey, a.rootKey); err != nil {
		return nil, err
	}
	pub, err := a.attKey.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("attestation key: %w", err)
	}
	a.attPub = pub.Bytes()[1:] // drop the 0x04 uncompressed-point prefix
	return a, nil
}

// issuePCK issues the PCK leaf carrying the SGX extension sgx, signed by
// the intermediate, and rebuilds the PEM chain the quotes carry.
func (a *TDXAuthority) issuePCK(sgx []byte) error {
	from, to := a.now.Add(-24*time.Hour), a.now.AddDate(10, 0, 0)
	ski := sha256.Sum256([]byte("pck leaf"))
	// Exactly six extensions, as the library demands: key usage, basic
	// constraints, SKI, AKI, CRL DP and the SGX extension.
	pckT := &x509.Certificate{
		SerialNumber: big.NewInt(3), NotBefore: from, NotAfter: to,
		Subject:  pkix.Name{CommonName: "Intel SGX PCK Certificate", Organization: []string{"duo-confidential test only"}},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, BasicConstraintsValid: true,
		SubjectKeyId: ski[:20], CRLDistributionPoints: []string{pcs.PckCrlURL("platform")},
		ExtraExtensions: []pkix.Extension{{Id: pcs.OidSgxExtension, Value: sgx}},
	}
	pck, err := tdxIssue(pckT, a.inter, &a.pckKey.PublicKey, a.interKey)
	if err != nil {
		return err
	}
	a.pck = pck
	a.chainPEM = append(append(tdxPEM(a.pck), tdxPEM(a.inter)...), tdxPEM(a.root)...)
	return nil
}

// issue signs tmpl by parent/key; a nil parent self-signs with key.
func tdxIssue(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	if parent == nil {
		parent, pub = tmpl, &key.PublicKey
	}
	tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("issue %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func tdxPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// RootPool returns a pool holding only the test root.
func (a *TDXAuthority) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.root)
	return p
}

// RootPEM returns the test root certificate as PEM.
func (a *TDXAuthority) RootPEM() []byte { return tdxPEM(a.root) }

// PCKLeaf returns the test PCK leaf certificate the quotes carry.
func (a *TDXAuthority) PCKLeaf() *x509.Certificate { return a.pck }

// FMSPC returns the FMSPC (hex) the authority's PCK leaf carries.
func (a *TDXAuthority) FMSPC() string { return a.ext.FMSPC }

// Quote returns a QuoteV4 in Intel's binary form with o's TD values, signed
// by the authority's attestation key and PCK chain.
func (a *TDXAuthority) Quote(o TDXQuoteOptions) ([]byte, error) {
	q, err := a.quote(o)
	if err != nil {
		return nil, err
	}
	return abi.QuoteToAbiBytes(q)
}

// QuoteProto returns the same quote as Quote, protobuf-marshalled the way
// Contrast puts it into raw_attestation_doc.
func (a *TDXAuthority) QuoteProto(o TDXQuoteOptions) ([]byte, error) {
	q, err := a.quote(o)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(q)
}

func (a *TDXAuthority) quote(o TDXQuoteOptions) (*tdxpb.QuoteV4, error) {
	q := proto.Clone(a.tmpl).(*tdxpb.QuoteV4)
	b := q.GetTdQuoteBody()
	b.ReportData = tdxClone(o.ReportData[:])
	b.MrTd, b.MrSeam, b.MrConfigId, b.MrOwner = tdxClone(o.MrTd[:]), tdxClone(o.MrSeam[:]), tdxClone(o.MrConfigID[:]), tdxClone(o.MrOwner[:])
	for i := range o.Rtmrs {
		b.Rtmrs[i] = tdxClone(o.Rtmrs[i][:])
	}
	b.TdAttributes, b.Xfam, b.TeeTcbSvn = tdxClone(o.TdAttributes[:]), tdxClone(o.Xfam[:]), tdxClone(o.TeeTcbSvn[:])

	sd := q.GetSignedData()
	sd.EcdsaAttestationKey = tdxClone(a.attPub)
	hdr, err := abi.HeaderToAbiBytes(q.GetHeader())
	if err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	bb, err := abi.TdQuoteBodyToAbiBytes(b)
	if err != nil {
		return nil, fmt.Errorf("encode TD body: %w", err)
	}
	if sd.Signature, err = tdxRawSign(a.attKey, append(hdr, bb...)); err != nil {
		return nil, err
	}

	qc := sd.GetCertificationData().GetQeReportCertificationData()
	h := sha256.Sum256(append(tdxClone(a.attPub), qc.GetQeAuthData().GetData()...))
	qc.QeReport.ReportData = append(h[:], make([]byte, 32)...)
	rep, err := abi.EnclaveReportToAbiBytes(qc.GetQeReport())
	if err != nil {
		return nil, fmt.Errorf("encode QE report: %w", err)
	}
	if qc.QeReportSignature, err = tdxRawSign(a.pckKey, rep); err != nil {
		return nil, err
	}

	ch := qc.GetPckCertificateChainData()
	delta := uint32(len(a.chainPEM)) - uint32(len(ch.GetPckCertChain())) // wraps for a shrink; the sums below wrap back
	ch.PckCertChain = tdxClone(a.chainPEM)
	ch.Size = uint32(len(a.chainPEM))
	sd.CertificationData.Size += delta
	q.SignedDataSize += delta
	return q, nil
}

// rawSign returns Intel's signature encoding: r‖s, 32 bytes each.
func tdxRawSign(k *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func tdxClone(b []byte) []byte { return append([]byte(nil), b...) }
