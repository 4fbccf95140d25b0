package attest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/pcs"
)

// collateralClockSkew is how far in the future a fetch time or issue date
// may lie before the collateral is refused: clocks differ a little, but
// collateral "from the future" means a wrong clock or a crafted bundle.
const collateralClockSkew = 5 * time.Minute

// tdxCollateralTimeout bounds one collateral lookup. The library's getter
// interface has no context, so without this a slow source could hold a
// verification (and the request behind it) indefinitely.
const tdxCollateralTimeout = 30 * time.Second

// tdxCollateral is the fetched and decoded collateral for one quote.
type tdxCollateral struct {
	tcbInfo    pcs.TdxTcbInfo
	qeIdentity pcs.QeIdentity
	pckCRL     *x509.RevocationList
	rootCRL    *x509.RevocationList
}

// tdxItem names one collateral item for messages and the Result.
type tdxItem struct {
	name string
	url  string
	item *CollateralItem
}

// collateralGetter adapts a CollateralSource to the library's context-free
// trust.HTTPSGetter: it serves what VerifyTDX already fetched and falls back
// to the source, under the caller's context, for anything else.
type collateralGetter struct {
	ctx   context.Context
	src   CollateralSource
	mu    sync.Mutex
	cache map[string]*CollateralItem
}

func (g *collateralGetter) item(url string) (*CollateralItem, error) {
	g.mu.Lock()
	it, ok := g.cache[url]
	g.mu.Unlock()
	if ok {
		return it, nil
	}
	ctx, cancel := context.WithTimeout(g.ctx, tdxCollateralTimeout)
	defer cancel()
	it, err := g.src.Collateral(ctx, url)
	if err != nil {
		return nil, err
	}
	if it == nil {
		return nil, fmt.Errorf("collateral source returned nothing for %s", url)
	}
	g.mu.Lock()
	g.cache[url] = it
	g.mu.Unlock()
	return it, nil
}

// Get implements trust.HTTPSGetter. Header keys are canonicalised because
// the library looks them up by exact, canonical name.
func (g *collateralGetter) Get(url string) (map[string][]string, []byte, error) {
	it, err := g.item(url)
	if err != nil {
		return nil, nil, err
	}
	h := make(map[string][]string, len(it.Header))
	for k, v := range it.Header {
		ck := http.CanonicalHeaderKey(k)
		h[ck] = append(h[ck], v...)
	}
	return h, it.Body, nil
}

// verifyTDXCollateral fetches, dates and checks the collateral. Our own
// checks run first so each failure gets its class; the library then re-runs
// everything (collateral signatures, QE identity, TDX module) as the
// authoritative full check.
func verifyTDXCollateral(ctx context.Context, ev *TDXEvidence, chain []*x509.Certificate, roots *x509.CertPool, now time.Time, opts HardwareOptions, res *Result) error {
	g := &collateralGetter{ctx: ctx, src: opts.Collateral, cache: map[string]*CollateralItem{}}
	urls := TDXCollateralURLs(ev)
	items := []tdxItem{
		{name: "TDX TCB info for FMSPC " + ev.FMSPC, url: urls[0]},
		{name: "TDX QE identity", url: urls[1]},
		{name: "PCK CRL (" + ev.CA + " CA)", url: urls[2]},
		{name: "Intel SGX root CA CRL", url: urls[3]},
	}
	for i := range items {
		it, err := g.item(items[i].url)
		if err != nil {
			e := newError(ClassCollateral, items[i].name, err, "collateral not available from %s", items[i].url)
			res.addCheck("collateral available", false, e.Error())
			return e
		}
		items[i].item = it
	}
	res.addCheck("collateral available", true, "")

	// Signature before judgement: nothing below reads a field of an item
	// that has not been verified to Intel's root.
	col, err := verifyTDXCollateralSignatures(items, chain, roots, now)
	if err != nil {
		res.addCheck("collateral signed by Intel", false, err.Error())
		return err
	}
	res.addCheck("collateral signed by Intel", true, "TCB info, QE identity and both CRLs verify to the Intel SGX Root CA")
	recordTDXCollateral(res, items, col)
	ev.TCBEvaluationDataNumber = col.tcbInfo.TcbInfo.TcbEvaluationDataNumber

	if err := checkTDXFreshness(items, col, now, opts.maxAge()); err != nil {
		res.addCheck("collateral fresh", false, err.Error())
		return err
	}
	res.addCheck("collateral fresh", true, "")

	if err := checkTDXRevocation(chain, col); err != nil {
		res.addCheck("not revoked", false, err.Error())
		return err
	}
	res.addCheck("not revoked", true, "")

	if err := checkTDXTCB(ev, col, opts.TCBPolicy, res); err != nil {
		res.addCheck("TCB status", false, err.Error())
		return err
	}
	detail := res.TCBStatus
	if res.TCBAcceptedBy != "" {
		detail += "; " + res.TCBAcceptedBy
	}
	res.addCheck("TCB status", true, detail)

	// go-tdx-guest v0.3.1's own collateral path (GetCollateral) is not used:
	// it compares FMSPC as strings and so rejects Intel's genuine TCB infos,
	// which spell it in upper case; it knows no v5 quotes; and it accepts
	// nothing but UpToDate. Everything it checks is checked above.
	return nil
}

// parseCRL accepts DER (what encoding=der asks for) and PEM, which some
// caches store.
func parseCRL(b []byte) (*x509.RevocationList, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	return x509.ParseRevocationList(b)
}

func recordTDXCollateral(res *Result, items []tdxItem, col *tdxCollateral) {
	dates := [][2]time.Time{
		{col.tcbInfo.TcbInfo.IssueDate, col.tcbInfo.TcbInfo.NextUpdate},
		{col.qeIdentity.EnclaveIdentity.IssueDate, col.qeIdentity.EnclaveIdentity.NextUpdate},
		{col.pckCRL.ThisUpdate, col.pckCRL.NextUpdate},
		{col.rootCRL.ThisUpdate, col.rootCRL.NextUpdate},
	}
	for i, it := range items {
		res.Collateral = append(res.Collateral, CollateralUse{
			Name:       it.name,
			Source:     it.item.Source,
			URL:        it.url,
			FetchedAt:  it.item.FetchedAt,
			IssueDate:  dates[i][0],
			NextUpdate: dates[i][1],
		})
	}
}

// checkTDXFreshness rejects items fetched too long ago or past their
// nextUpdate. An item without a fetch time counts as stale: we cannot show
// it is recent, and verification fails closed.
func checkTDXFreshness(items []tdxItem, col *tdxCollateral, now time.Time, maxAge time.Duration) error {
	next := []time.Time{col.tcbInfo.TcbInfo.NextUpdate, col.qeIdentity.EnclaveIdentity.NextUpdate, col.pckCRL.NextUpdate, col.rootCRL.NextUpdate}
	issued := []time.Time{col.tcbInfo.TcbInfo.IssueDate, col.qeIdentity.EnclaveIdentity.IssueDate, col.pckCRL.ThisUpdate, col.rootCRL.ThisUpdate}
	for i, it := range items {
		fetched := it.item.FetchedAt
		if fetched.IsZero() {
			return newError(ClassCollateralStale, it.name, nil, "%s has no fetch time; %s", it.name, RefreshHint)
		}
		if fetched.After(now.Add(collateralClockSkew)) {
			return newError(ClassCollateral, it.name, nil, "%s claims to be fetched at %s, in the future; check this machine's clock or the bundle", it.name, fetched.UTC().Format(time.RFC3339))
		}
		if is := issued[i]; is.After(now.Add(collateralClockSkew)) {
			return newError(ClassCollateral, it.name, nil, "%s is issued at %s, in the future; check this machine's clock", it.name, is.UTC().Format(time.RFC3339))
		}
		if now.Sub(fetched) > maxAge {
			return newError(ClassCollateralStale, it.name, nil, "%s fetched %s, older than %s; %s", it.name, fetched.UTC().Format(time.DateOnly), maxAge, RefreshHint)
		}
		if !next[i].IsZero() && now.After(next[i]) {
			return newError(ClassCollateralStale, it.name, nil, "%s expired at its nextUpdate %s; %s", it.name, next[i].UTC().Format(time.RFC3339), RefreshHint)
		}
	}
	return nil
}

// checkTDXRevocation checks the verified chain against both CRLs. The CRL
// signatures are checked first so that only a genuine Intel CRL can make us
// report ClassRevoked.
func checkTDXRevocation(chain []*x509.Certificate, col *tdxCollateral) error {
	leaf, inter, root := chain[0], chain[1], chain[2]
	if err := col.pckCRL.CheckSignatureFrom(inter); err != nil {
		return newError(ClassCollateral, "PCK CRL", err, "PCK CRL is not signed by %q", inter.Subject.CommonName)
	}
	if err := col.rootCRL.CheckSignatureFrom(root); err != nil {
		return newError(ClassCollateral, "root CA CRL", err, "root CA CRL is not signed by %q", root.Subject.CommonName)
	}
	for _, rc := range col.pckCRL.RevokedCertificateEntries {
		if rc.SerialNumber != nil && rc.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return newError(ClassRevoked, "PCK certificate", nil, "PCK certificate serial %x revoked at %s", leaf.SerialNumber, rc.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	for _, rc := range col.rootCRL.RevokedCertificateEntries {
		if rc.SerialNumber != nil && rc.SerialNumber.Cmp(inter.SerialNumber) == 0 {
			return newError(ClassRevoked, "PCK intermediate", nil, "%s serial %x revoked at %s", inter.Subject.CommonName, inter.SerialNumber, rc.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
