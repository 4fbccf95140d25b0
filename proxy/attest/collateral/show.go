package collateral

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Kind classifies a collateral item by its URL.
type Kind string

// Collateral kinds.
const (
	KindTCBInfo      Kind = "tcb-info"       // Intel TDX (or SGX) TCB info JSON
	KindQEIdentity   Kind = "qe-identity"    // Intel TD (or SGX) QE identity JSON
	KindPCKCRL       Kind = "pck-crl"        // Intel PCK CRL
	KindIntelRootCRL Kind = "intel-root-crl" // Intel SGX Root CA CRL
	KindAMDVCEK      Kind = "amd-vcek"       // AMD VCEK certificate (DER)
	KindAMDCertChain Kind = "amd-cert-chain" // AMD ASK+ARK (PEM)
	KindAMDCRL       Kind = "amd-crl"        // AMD product CRL
	KindUnknown      Kind = "unknown"        // a URL this package does not recognise
)

// Status is the freshness verdict for one item.
type Status string

// Statuses, from good to bad.
const (
	StatusOK      Status = "OK"      // younger than the maximum age and before its next update
	StatusStale   Status = "STALE"   // older than the maximum age, or dated in the future
	StatusExpired Status = "EXPIRED" // past nextUpdate (TCB info, QE identity, CRL) or NotAfter (certificate)
	StatusInvalid Status = "INVALID" // the body cannot be read as the kind its URL promises
)

// clockSkew is how far in the future a fetch time may lie before we call the
// item stale; an unbounded future date would make an item fresh forever.
const clockSkew = 5 * time.Minute

// Info describes one item: what it is, when it was fetched and for how long
// the vendor says it is valid.
type Info struct {
	URL        string        `json:"url"`
	Name       string        `json:"name"`
	Kind       Kind          `json:"kind"`
	Source     string        `json:"source,omitempty"`
	FetchedAt  time.Time     `json:"fetched_at"`
	IssueDate  time.Time     `json:"issue_date,omitzero"`  // issueDate, CRL ThisUpdate or latest NotBefore
	NextUpdate time.Time     `json:"next_update,omitzero"` // nextUpdate, CRL NextUpdate or earliest NotAfter
	Age        time.Duration `json:"age_seconds"`
	Status     Status        `json:"status,omitempty"`
	Problem    string        `json:"problem,omitempty"` // why the status is not OK
}

// MarshalJSON writes Age in whole seconds so that monitoring can compare it.
func (i Info) MarshalJSON() ([]byte, error) {
	type plain Info
	p := plain(i)
	p.Age = i.Age / time.Second
	return json.Marshal(p)
}

// Describe names the item from its URL and reads its validity dates from the
// body; Age and Status are left for Inspect. A body that does not parse is
// reported in Problem with Status INVALID.
func Describe(it *attest.CollateralItem) Info {
	info := Info{URL: it.URL, Source: it.Source, FetchedAt: it.FetchedAt}
	info.Kind, info.Name = nameURL(it.URL)
	var err error
	switch info.Kind {
	case KindTCBInfo, KindQEIdentity:
		info.IssueDate, info.NextUpdate, err = jsonValidity(it.Body)
	case KindPCKCRL, KindIntelRootCRL, KindAMDCRL:
		info.IssueDate, info.NextUpdate, err = crlValidity(it.Body)
	case KindAMDVCEK, KindAMDCertChain:
		info.IssueDate, info.NextUpdate, err = certValidity(it.Body)
	}
	if err != nil {
		info.Status, info.Problem = StatusInvalid, err.Error()
	}
	return info
}

// nameURL returns the kind and a human name such as
// "TDX TCB info (FMSPC 50806f000000)".
func nameURL(raw string) (Kind, string) {
	u, err := url.Parse(raw)
	if err != nil {
		return KindUnknown, raw
	}
	q := u.Query()
	p := strings.Trim(u.Path, "/")
	switch u.Hostname() {
	case IntelPCSHost:
		tee := "SGX"
		if strings.HasPrefix(p, "tdx/") {
			tee = "TDX"
		}
		switch {
		case strings.HasSuffix(p, "/tcb"):
			return KindTCBInfo, fmt.Sprintf("%s TCB info (FMSPC %s)", tee, q.Get("fmspc"))
		case strings.HasSuffix(p, "/qe/identity") && tee == "TDX":
			return KindQEIdentity, "TD QE identity"
		case strings.HasSuffix(p, "/qe/identity"):
			return KindQEIdentity, "SGX QE identity"
		case strings.HasSuffix(p, "/pckcrl"):
			return KindPCKCRL, fmt.Sprintf("PCK CRL (%s)", q.Get("ca"))
		}
	case IntelCertsHost:
		if strings.HasSuffix(p, "RootCA.der") || strings.HasSuffix(p, "RootCA.crl") {
			return KindIntelRootCRL, "Intel root CA CRL"
		}
	case AMDKDSHost:
		// vcek/v1/<product>/{cert_chain,crl,<chip id>} or vlek/v1/...
		parts := strings.Split(p, "/")
		if len(parts) != 4 || parts[1] != "v1" {
			break
		}
		signer := ""
		if parts[0] == "vlek" {
			signer = "VLEK "
		}
		product, last := parts[2], parts[3]
		switch {
		case last == "cert_chain":
			return KindAMDCertChain, fmt.Sprintf("AMD %scert chain (%s)", signer, product)
		case last == "crl":
			return KindAMDCRL, fmt.Sprintf("AMD %sCRL (%s)", signer, product)
		case parts[0] == "vcek":
			chip := last
			if len(chip) > 16 {
				chip = chip[:16] + "…"
			}
			fmc := ""
			if q.Has("fmcSPL") { // Turin
				fmc = "fmc=" + q.Get("fmcSPL") + " "
			}
			return KindAMDVCEK, fmt.Sprintf("AMD VCEK (%s, chip %s, TCB %sbl=%s tee=%s snp=%s ucode=%s)",
				product, chip, fmc, q.Get("blSPL"), q.Get("teeSPL"), q.Get("snpSPL"), q.Get("ucodeSPL"))
		}
	}
	return KindUnknown, raw
}

// jsonValidity reads issueDate/nextUpdate from an Intel PCS TCB info
// ({"tcbInfo":{…}}) or QE identity ({"enclaveIdentity":{…}}) response.
func jsonValidity(body []byte) (issue, next time.Time, err error) {
	type dates struct {
		IssueDate  time.Time `json:"issueDate"`
		NextUpdate time.Time `json:"nextUpdate"`
	}
	var doc struct {
		TCBInfo         *dates `json:"tcbInfo"`
		EnclaveIdentity *dates `json:"enclaveIdentity"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return issue, next, fmt.Errorf("read issueDate/nextUpdate: %w", err)
	}
	d := doc.TCBInfo
	if d == nil {
		d = doc.EnclaveIdentity
	}
	if d == nil || d.NextUpdate.IsZero() {
		return issue, next, errors.New("no tcbInfo or enclaveIdentity with a nextUpdate")
	}
	return d.IssueDate, d.NextUpdate, nil
}

// crlValidity accepts DER or PEM, as Intel serves either by encoding=.
func crlValidity(body []byte) (this, next time.Time, err error) {
	der := body
	if blk, _ := pem.Decode(body); blk != nil {
		der = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return this, next, fmt.Errorf("parse CRL: %w", err)
	}
	return crl.ThisUpdate, crl.NextUpdate, nil
}

// certValidity returns the window in which every certificate in body (DER,
// or one or more PEM blocks) is valid.
func certValidity(body []byte) (notBefore, notAfter time.Time, err error) {
	var ders [][]byte
	if bytes.Contains(body, []byte("-----BEGIN")) {
		rest := body
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			ders = append(ders, blk.Bytes)
		}
	} else {
		ders = [][]byte{body}
	}
	if len(ders) == 0 {
		return notBefore, notAfter, errors.New("no PEM certificate")
	}
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return notBefore, notAfter, fmt.Errorf("parse certificate: %w", err)
		}
		if notBefore.IsZero() || c.NotBefore.After(notBefore) {
			notBefore = c.NotBefore
		}
		if notAfter.IsZero() || c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return notBefore, notAfter, nil
}

// Inspect describes every item of b and judges it at now against maxAge
// (zero means attest.DefaultMaxCollateralAge), sorted by URL.
func Inspect(b *Bundle, now time.Time, maxAge time.Duration) []Info {
	if maxAge <= 0 {
		maxAge = attest.DefaultMaxCollateralAge
	}
	items := b.Items()
	out := make([]Info, 0, len(items))
	for _, it := range items {
		out = append(out, judge(Describe(it), now, maxAge))
	}
	return out
}

func judge(info Info, now time.Time, maxAge time.Duration) Info {
	info.Age = now.Sub(info.FetchedAt)
	if info.Status == StatusInvalid {
		return info
	}
	switch {
	case !info.NextUpdate.IsZero() && !now.Before(info.NextUpdate):
		info.Status = StatusExpired
		info.Problem = "past its next update " + info.NextUpdate.UTC().Format(time.RFC3339)
	case info.Age > maxAge:
		info.Status = StatusStale
		info.Problem = fmt.Sprintf("fetched %s ago, more than the allowed %s", roundDuration(info.Age), roundDuration(maxAge))
	case info.Age < -clockSkew:
		info.Status = StatusStale
		info.Problem = "fetched_at lies in the future; check the clocks of this and the exporting machine"
	default:
		info.Status = StatusOK
	}
	return info
}

// StaleError lists the items Check found unusable. It matches
// attest.ErrCollateralStale with errors.Is.
type StaleError struct {
	Items []Info
}

// Error names every item with its dates and ends with the refresh commands.
func (e *StaleError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d collateral item(s) not usable:", len(e.Items))
	for _, i := range e.Items {
		fmt.Fprintf(&sb, "\n  %s [%s]: %s (fetched %s", i.Name, i.Status, i.Problem, i.FetchedAt.UTC().Format(time.RFC3339))
		if !i.NextUpdate.IsZero() {
			fmt.Fprintf(&sb, ", next update %s", i.NextUpdate.UTC().Format(time.RFC3339))
		}
		sb.WriteString(")")
	}
	sb.WriteString("\n" + attest.RefreshHint)
	return sb.String()
}

// Unwrap makes errors.Is(err, attest.ErrCollateralStale) true.
func (e *StaleError) Unwrap() error { return attest.ErrCollateralStale }

// Check returns a *StaleError listing every item of b that is older than
// maxAge (zero means the default), past its next update, dated in the
// future or unreadable; nil when all are fine.
func (b *Bundle) Check(now time.Time, maxAge time.Duration) error {
	var bad []Info
	for _, i := range Inspect(b, now, maxAge) {
		if i.Status != StatusOK {
			bad = append(bad, i)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &StaleError{Items: bad}
}

// WriteTable prints infos as an aligned table: name, fetched, age, next
// update, status.
func WriteTable(w io.Writer, infos []Info) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFETCHED\tAGE\tNEXT UPDATE\tSTATUS")
	for _, i := range infos {
		next := "-"
		if !i.NextUpdate.IsZero() {
			next = i.NextUpdate.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.Name, i.FetchedAt.UTC().Format(time.RFC3339),
			roundDuration(i.Age), next, i.Status)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write collateral table: %w", err)
	}
	return nil
}

// roundDuration renders ages as days and hours, which is what matters for
// monthly refreshes.
func roundDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	s := fmt.Sprintf("%dh", hours)
	if days > 0 {
		s = fmt.Sprintf("%dd%dh", days, hours)
	}
	if d < time.Hour {
		s = fmt.Sprintf("%dm", int(d/time.Minute))
	}
	if neg {
		s = "-" + s
	}
	return s
}
