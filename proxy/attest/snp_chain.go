package attest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// snpRoots is the trust anchor for one verification: ARK, and the ASK (VCEK
// signer) or ASVK (VLEK signer).
type snpRoots struct {
	ark, ica *x509.Certificate
	source   string // "embedded AMD roots" or "configured roots"
}

// embeddedVLEKRoots holds the embedded ASVK chains, parsed once; the
// library only preloads the VCEK chains into trust.DefaultRootCerts.
var embeddedVLEKRoots = sync.OnceValue(func() map[string]*trust.ProductCerts {
	out := map[string]*trust.ProductCerts{}
	for p, b := range map[string][]byte{
		"Milan": trust.AskArkMilanVlekBytes,
		"Genoa": trust.AskArkGenoaVlekBytes,
		"Turin": trust.AskArkTurinVlekBytes,
	} {
		var pc trust.ProductCerts
		if err := pc.FromKDSCertBytes(b); err == nil && pc.Asvk != nil && pc.Ark != nil {
			out[p] = &pc
		}
	}
	return out
})

// snpRootsFor picks the roots: opts.Roots.SNP when set (tests, sandbox),
// else AMD's roots embedded in go-sev-guest. The certificates are shared
// read-only; nothing mutable (the library's AMDRootCerts with its mutex
// and cached CRL) is shared between calls.
func snpRootsFor(product string, signer abi.ReportSigner, roots *Roots) (snpRoots, error) {
	if roots != nil && roots.SNP != nil {
		c, ok := roots.SNP[product]
		if !ok || c.ARK == nil || c.ASK == nil {
			return snpRoots{}, newError(ClassChain, "ARK", nil, "no configured AMD roots for product %q", product)
		}
		return snpRoots{ark: c.ARK, ica: c.ASK, source: "configured roots"}, nil
	}
	if signer == abi.VlekReportSigner {
		pc, ok := embeddedVLEKRoots()[product]
		if !ok {
			return snpRoots{}, newError(ClassChain, "ARK", nil, "no embedded AMD VLEK roots for product %q", product)
		}
		return snpRoots{ark: pc.Ark, ica: pc.Asvk, source: "embedded AMD roots"}, nil
	}
	r, err := trust.GetDefaultRootCerts(product)
	if err != nil || r.ProductCerts == nil || r.ProductCerts.Ark == nil || r.ProductCerts.Ask == nil {
		return snpRoots{}, newError(ClassChain, "ARK", err, "no embedded AMD roots for product %q", product)
	}
	return snpRoots{ark: r.ProductCerts.Ark, ica: r.ProductCerts.Ask, source: "embedded AMD roots"}, nil
}

// verifySNPHardware runs chain, signature and revocation checks in order.
func verifySNPHardware(ctx context.Context, ev *SNPEvidence, report []byte, opts HardwareOptions, res *Result) error {
	now := opts.now()
	signer := ev.signer()
	if signer != abi.VcekReportSigner && signer != abi.VlekReportSigner {
		res.addCheck("snp report signer", false, signer.String())
		return newError(ClassSignature, "SIGNER_INFO", nil, "report is signed by %v; only VCEK and VLEK signatures are accepted", signer)
	}
	if ev.Product == "" {
		res.addCheck("snp product", false, "unknown")
		return newError(ClassCollateral, "VCEK", nil, "the v2 report names no product line and carries no VCEK; set the product or supply the VCEK")
	}
	if !knownSNPProduct(ev.Product) {
		return newError(ClassMalformed, "snp", nil, "unsupported AMD product %q", ev.Product)
	}
	roots, err := snpRootsFor(ev.Product, signer, opts.Roots)
	if err != nil {
		res.addCheck("snp chain", false, err.Error())
		return err
	}
	ek, ekDER, err := snpEndorsementCert(ctx, ev, signer, opts, res)
	if err != nil {
		res.addCheck("snp chain", false, err.Error())
		return err
	}
	if err := snpVerifyChain(ek, roots, signer, ev.Product, now); err != nil {
		res.addCheck("snp chain", false, err.Error())
		return err
	}
	res.addCheck("snp chain", true, fmt.Sprintf("%v of %s verified to %s ARK", signer, ev.Product, roots.source))
	if err := snpCheckEndorsementMatches(ev.Product, ev.Attestation.Report, ek, signer); err != nil {
		res.addCheck("snp endorsement key matches report", false, err.Error())
		return err
	}
	res.addCheck("snp endorsement key matches report", true, "issued for this chip and REPORTED_TCB")
	if err := snpVerifySignature(ctx, ev, report, ek, ekDER, roots, signer, now); err != nil {
		res.addCheck("snp report signature", false, err.Error())
		return err
	}
	res.addCheck("snp report signature", true, "ECDSA P-384 signature by the "+signer.String())
	if opts.SkipCollateral {
		res.addCheck("snp revocation", false, "skipped: SkipCollateral set")
		return nil
	}
	if err := snpCheckRevocation(ctx, ev, ek, roots, signer, opts, res); err != nil {
		res.addCheck("snp revocation", false, err.Error())
		return err
	}
	res.addCheck("snp revocation", true, "VCEK/VLEK and ASK not revoked")
	if err := checkSNPOperatorMinimum(ev, opts.TCBPolicy, res); err != nil {
		res.addCheck("snp operator minimum TCB", false, err.Error())
		return err
	}
	return nil
}

// checkSNPOperatorMinimum holds REPORTED, CURRENT and LAUNCH TCB to the
// operator's floor for the product line (attestation.tcb_policy.snp), on top
// of the manifest's minimum that CheckSNP applies.
func checkSNPOperatorMinimum(ev *SNPEvidence, policy TCBPolicy, res *Result) error {
	m, ok := policy.SNPMinimumTCB[ev.Product]
	if !ok {
		return nil
	}
	mins := map[string]*uint8{"fmc": m.FMC, "bootloader": m.Bootloader, "tee": m.TEE, "snp": m.SNP, "microcode": m.Microcode}
	rep := ev.Attestation.Report
	for _, kind := range []string{"REPORTED_TCB", "CURRENT_TCB", "LAUNCH_TCB"} {
		for _, p := range snpTCBValues(ev.Product, snpTCBOf(rep, kind)) {
			if min := mins[p.name]; min != nil && p.value < *min {
				return newError(ClassTCB, kind+"."+p.name, nil, "%s.%s SPL %d is below the operator minimum %d (attestation.tcb_policy.snp.minimum_tcb.%s)", kind, p.name, p.value, *min, ev.Product)
			}
		}
	}
	res.addCheck("snp operator minimum TCB", true, "meets attestation.tcb_policy.snp.minimum_tcb."+ev.Product)
	res.TCBAcceptedBy = "meets the operator minimum TCB for " + ev.Product
	return nil
}

// snpEndorsementCert returns the VCEK/VLEK: from the evidence, else (VCEK
// only, since KDS never serves VLEKs) from the collateral by KDS URL.
func snpEndorsementCert(ctx context.Context, ev *SNPEvidence, signer abi.ReportSigner, opts HardwareOptions, res *Result) (*x509.Certificate, []byte, error) {
	chain := ev.Attestation.GetCertificateChain()
	name := signer.String()
	der := chain.GetVcekCert()
	if signer == abi.VlekReportSigner {
		der = chain.GetVlekCert()
	}
	use := CollateralUse{Name: "AMD " + name, Source: "evidence"}
	if len(der) == 0 {
		rep := ev.Attestation.Report
		info, _ := abi.ParseSignerInfo(rep.GetSignerInfo())
		if signer == abi.VlekReportSigner {
			return nil, nil, newError(ClassCollateral, name, nil, "the report is VLEK-signed but carries no VLEK certificate (AMD KDS does not publish VLEKs)")
		}
		if info.MaskChipKey {
			return nil, nil, newError(ClassCollateral, name, nil, "the report masks its chip ID and carries no VCEK, so the VCEK cannot be looked up")
		}
		if opts.Collateral == nil {
			return nil, nil, newError(ClassCollateral, name, nil, "the report carries no VCEK and no collateral source is configured")
		}
		url := snpVCEKURL(ev.Product, rep.GetChipId(), rep.GetReportedTcb())
		item, err := opts.Collateral.Collateral(ctx, url)
		if err != nil || item == nil {
			return nil, nil, newError(ClassCollateral, name, err, "VCEK for this chip and TCB not available (%s)", url)
		}
		der = item.Body
		use = CollateralUse{Name: "AMD " + name, Source: item.Source, URL: url, FetchedAt: item.FetchedAt}
	}
	cert, err := trust.ParseCert(der)
	if err != nil {
		return nil, nil, newError(ClassChain, name, err, "parse %s certificate", name)
	}
	use.IssueDate = cert.NotBefore
	res.Collateral = append(res.Collateral, use)
	return cert, cert.Raw, nil
}

// snpVerifyChain verifies ek → ASK/ASVK → ARK at now, and that ek carries the
// AMD KDS extensions; the library repeats this, but doing it here lets us
// tell a chain failure from a signature failure.
func snpVerifyChain(ek *x509.Certificate, roots snpRoots, signer abi.ReportSigner, product string, now time.Time) error {
	name := signer.String()
	if _, err := snpEndorsementInfo(ek, signer, product); err != nil {
		return newError(ClassChain, name, err, "%s certificate lacks the AMD KDS extensions", name)
	}
	if product == "Turin" {
		if err := checkTurinEndorsementCert(ek, signer); err != nil {
			return newError(ClassChain, name, err, "%s certificate", name)
		}
	}
	rootPool := x509.NewCertPool()
	rootPool.AddCert(roots.ark)
	inter := x509.NewCertPool()
	inter.AddCert(roots.ica)
	_, err := ek.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return newError(ClassChain, name, err, "%s does not chain to the trusted AMD ARK (%s)", name, roots.source)
	}
	return nil
}

// snpCheckEndorsementMatches checks that the endorsement certificate was
// issued for this report: same reported TCB and, for a VCEK, same chip. A
// VCEK for another chip or TCB is collateral that does not match the
// evidence.
func snpCheckEndorsementMatches(product string, rep *spb.Report, ek *x509.Certificate, signer abi.ReportSigner) error {
	name := signer.String()
	info, err := snpEndorsementInfo(ek, signer, product)
	if err != nil {
		return newError(ClassChain, name, err, "%s extensions", name)
	}
	got, want := snpTCBValues(product, info.tcb), snpTCBValues(product, rep.GetReportedTcb())
	for i := range got {
		if got[i] != want[i] {
			return newError(ClassCollateral, name, nil, "%s is for TCB %s but the report's REPORTED_TCB is %s; supply the %s for the current TCB",
				name, snpTCBString(product, info.tcb), snpTCBString(product, rep.GetReportedTcb()), name)
		}
	}
	sinfo, _ := abi.ParseSignerInfo(rep.GetSignerInfo())
	if signer == abi.VcekReportSigner && !sinfo.MaskChipKey {
		chip := rep.GetChipId()
		if len(info.hwid) == 8 && len(chip) >= 8 { // Turin: the VCEK names the first 8 bytes
			chip = chip[:8]
		}
		if !bytes.Equal(info.hwid, chip) {
			return newError(ClassCollateral, name, nil, "VCEK hwid does not equal the report's CHIP_ID")
		}
	}
	return nil
}

// snpVerifySignature lets go-sev-guest check the report signature (and its
// own view of the chain) offline with fresh per-call roots.
func snpVerifySignature(ctx context.Context, ev *SNPEvidence, report []byte, ek *x509.Certificate, ekDER []byte, roots snpRoots, signer abi.ReportSigner, now time.Time) error {
	pc := &trust.ProductCerts{Ark: roots.ark}
	chain := &spb.CertificateChain{ArkCert: roots.ark.Raw}
	if signer == abi.VlekReportSigner {
		pc.Asvk = roots.ica
		chain.VlekCert = ekDER
	} else {
		pc.Ask = roots.ica
		chain.AskCert = roots.ica.Raw
		chain.VcekCert = ekDER
	}
	if ev.Product == "Turin" {
		return snpVerifyTurinSignature(report, ek, pc, signer, now)
	}
	product, _ := kds.ParseProductLine(ev.Product)
	vopts := &verify.Options{
		DisableCertFetching: true,
		Now:                 now,
		TrustedRoots: map[string][]*trust.AMDRootCerts{ev.Product: {{
			Product: ev.Product, ProductLine: ev.Product, ProductCerts: pc,
		}}},
		Product: product,
	}
	att := &spb.Attestation{Report: ev.Attestation.Report, CertificateChain: chain}
	if err := verify.SnpAttestationContext(ctx, att, vopts); err != nil {
		// The library reports chain and signature problems alike; the
		// signature alone decides which one this is.
		if sigErr := verify.SnpReportSignature(report, ek); sigErr != nil {
			return newError(ClassSignature, "SIGNATURE", sigErr, "report signature does not verify with the %v", signer)
		}
		return newError(ClassChain, signer.String(), err, "AMD certificate chain rejected")
	}
	return nil
}

// snpVerifyTurinSignature verifies a Turin report with go-sev-guest's
// parts that do not read the endorsement certificate's extensions (which
// v0.15.0 cannot, see snpEndorsementInfo): the library's X.509 options for
// the AMD chain, then its report signature check.
func snpVerifyTurinSignature(report []byte, ek *x509.Certificate, pc *trust.ProductCerts, signer abi.ReportSigner, now time.Time) error {
	r := &trust.AMDRootCerts{ProductLine: "Turin", ProductCerts: pc}
	vo := r.X509Options(now, signer)
	if vo == nil {
		return newError(ClassChain, signer.String(), nil, "no AMD Turin chain for %v", signer)
	}
	if _, err := ek.Verify(*vo); err != nil {
		return newError(ClassChain, signer.String(), err, "AMD certificate chain rejected")
	}
	if err := verify.SnpReportSignature(report, ek); err != nil {
		return newError(ClassSignature, "SIGNATURE", err, "report signature does not verify with the %v", signer)
	}
	return nil
}

// snpCRL is one CRL candidate with where it came from.
type snpCRL struct {
	crl *x509.RevocationList
	use CollateralUse
}

// snpCheckRevocation checks the VCEK/VLEK and ASK serials against the newest
// valid ARK-signed CRL from the evidence or the collateral, and that CRL's
// freshness.
func snpCheckRevocation(ctx context.Context, ev *SNPEvidence, ek *x509.Certificate, roots snpRoots, signer abi.ReportSigner, opts HardwareOptions, res *Result) error {
	const item = "AMD CRL"
	now := opts.now()
	url := kds.CrlLinkByKey(ev.Product, signer)
	var cands []snpCRL
	var bad []error
	add := func(body []byte, use CollateralUse) {
		crl, err := x509.ParseRevocationList(body)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s CRL: %w", use.Source, err))
			return
		}
		if err := crl.CheckSignatureFrom(roots.ark); err != nil {
			bad = append(bad, fmt.Errorf("%s CRL not signed by the ARK: %w", use.Source, err))
			return
		}
		use.IssueDate, use.NextUpdate = crl.ThisUpdate, crl.NextUpdate
		cands = append(cands, snpCRL{crl: crl, use: use})
	}
	if b := ev.Attestation.GetCertificateChain().GetExtras()[SNPCRLExtrasKey]; len(b) > 0 {
		add(b, CollateralUse{Name: item, Source: "evidence", URL: url})
	}
	if opts.Collateral != nil {
		it, err := opts.Collateral.Collateral(ctx, url)
		switch {
		case err == nil && it != nil:
			add(it.Body, CollateralUse{Name: item, Source: it.Source, URL: url, FetchedAt: it.FetchedAt})
		case err != nil && !errors.Is(err, ErrCollateralNotFound):
			bad = append(bad, fmt.Errorf("collateral source: %w", err))
		}
	}
	if len(cands) == 0 {
		if len(bad) > 0 {
			return newError(ClassCollateral, item, errors.Join(bad...), "no usable AMD CRL for %s (%s)", ev.Product, url)
		}
		return newError(ClassCollateral, item, nil, "AMD CRL for %s missing from evidence and collateral (%s); %s", ev.Product, url, RefreshHint)
	}
	// The newest CRL wins: an old but still valid CRL replayed by the host
	// must not hide a newer revocation the bundle knows about.
	best := cands[0]
	for _, c := range cands[1:] {
		if c.crl.ThisUpdate.After(best.crl.ThisUpdate) {
			best = c
		}
	}
	res.Collateral = append(res.Collateral, best.use)
	if best.crl.ThisUpdate.After(now.Add(collateralClockSkew)) || best.use.FetchedAt.After(now.Add(collateralClockSkew)) {
		return newError(ClassCollateral, item, nil, "AMD CRL (%s) is dated %s / fetched %s, in the future; check this machine's clock or the bundle",
			best.use.Source, best.crl.ThisUpdate.UTC().Format(time.RFC3339), best.use.FetchedAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(best.crl.NextUpdate) {
		return newError(ClassCollateralStale, item, nil, "AMD CRL (%s) expired at %s (nextUpdate); %s", best.use.Source, best.crl.NextUpdate.UTC().Format(time.RFC3339), RefreshHint)
	}
	if best.use.Source != "evidence" {
		if best.use.FetchedAt.IsZero() {
			return newError(ClassCollateralStale, item, nil, "AMD CRL has no fetch time, so its age is unknown; %s", RefreshHint)
		}
		if age := now.Sub(best.use.FetchedAt); age > opts.maxAge() {
			return newError(ClassCollateralStale, item, nil, "AMD CRL was fetched %s ago, more than the %s allowed; %s", age.Round(time.Hour), opts.maxAge(), RefreshHint)
		}
	}
	for _, rc := range best.crl.RevokedCertificateEntries {
		switch {
		case rc.SerialNumber == nil:
		case rc.SerialNumber.Cmp(ek.SerialNumber) == 0:
			return newError(ClassRevoked, signer.String(), nil, "%s serial %x revoked at %s", signer, ek.SerialNumber, rc.RevocationTime.UTC().Format(time.RFC3339))
		case rc.SerialNumber.Cmp(roots.ica.SerialNumber) == 0:
			field := "ASK"
			if strings.HasPrefix(roots.ica.Subject.CommonName, "SEV-VLEK") {
				field = "ASVK"
			}
			return newError(ClassRevoked, field, nil, "%s serial %x revoked at %s", field, roots.ica.SerialNumber, rc.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
