package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/wording"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// AttestCmd groups attestation commands.
type AttestCmd struct {
	Verify AttestVerifyCmd `cmd:"" help:"Verify an attestation document or raw TDX/SEV-SNP evidence and print a report."`
}

// AttestVerifyCmd verifies one attestation document or piece of raw
// evidence. Exit status 0 means accepted; 1 means rejected or failed.
type AttestVerifyCmd struct {
	Doc        string `help:"Attestation document (JSON as returned by /privatemode/v1/attest)." type:"existingfile" xor:"input" required:""`
	TDXQuote   string `name:"tdx-quote" help:"Raw TDX quote, v4 or v5 (Intel binary form)." type:"existingfile" xor:"input" required:""`
	SNPReport  string `name:"snp-report" help:"Raw SEV-SNP report, optionally followed by its certificate table." type:"existingfile" xor:"input" required:""`
	Nonce      string `help:"The 32-byte nonce the document was requested with (hex or base64). Required with --doc."`
	ReportData string `name:"report-data" help:"Expected REPORT_DATA for raw evidence (hex, up to 64 bytes, zero-padded)."`
	Manifest   string `help:"Trusted manifest JSON: pins it for this check, overriding the configured manifest policy." type:"existingfile"`
	Collateral string `help:"Collateral bundle to use (default: the configured bundle)." type:"path"`
	Offline    bool   `help:"Never fetch: collateral and manifests come only from files."`
	// SkipCollateral is deliberately long-named and reported in the output.
	SkipCollateral bool   `name:"signature-only" help:"Check signature and vendor chain only: no TCB status, no revocation, no collateral."`
	At             string `help:"Verify as of this time (RFC 3339) instead of now, e.g. for archived evidence."`
	TestRoots      string `name:"test-roots" help:"PEM file of TEST vendor roots for sandbox evidence. NOT FOR PRODUCTION: evidence that passes with them proves nothing." type:"existingfile"`
	Record         bool   `help:"Append an accepted document to the trust log in the state directory."`
	JSON           bool   `help:"Print the result as JSON."`
}

// Run verifies and prints the report.
func (c *AttestVerifyCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return err
	}
	log := g.Logger()
	// Check the inputs before touching collateral, so a typo is reported
	// as such and not as a missing bundle.
	var nonce []byte
	if c.Doc != "" {
		if c.Nonce == "" {
			return errors.New("--nonce is required with --doc: the document is only meaningful for the nonce it answers")
		}
		if nonce, err = decodeBytes(c.Nonce); err != nil {
			return fmt.Errorf("--nonce: %w", err)
		}
	}
	tcbPolicy, err := cfg.TCBPolicy()
	if err != nil {
		return err
	}
	hw := attest.HardwareOptions{
		MaxCollateralAge: cfg.Attestation.Collateral.MaxAge,
		SkipCollateral:   c.SkipCollateral,
		TCBPolicy:        tcbPolicy,
	}
	if c.At != "" {
		at, err := time.Parse(time.RFC3339, c.At)
		if err != nil {
			return fmt.Errorf("--at: %w (want RFC 3339, e.g. 2026-11-25T12:00:00Z)", err)
		}
		hw.Now = at
	}
	if c.TestRoots != "" && !testRootsBuilt {
		return errNoTestRoots("--test-roots")
	}
	if c.TestRoots != "" {
		b, err := os.ReadFile(c.TestRoots)
		if err != nil {
			return fmt.Errorf("read test roots: %w", err)
		}
		roots, err := attest.ParseTestRoots(b)
		if err != nil {
			return fmt.Errorf("--test-roots %s: %w", c.TestRoots, err)
		}
		hw.Roots = roots
		log.Warn("verifying against TEST vendor roots: the result proves nothing about real hardware", "file", c.TestRoots)
	}
	if !c.SkipCollateral {
		src, err := cfg.CollateralSource(c.Collateral, config.OfflineIf(c.Offline || !cfg.Attestation.Collateral.Online))
		if err != nil {
			return err
		}
		hw.Collateral = src
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res *attest.Result
	switch {
	case c.Doc != "":
		res, err = c.verifyDoc(ctx, cfg, hw, nonce)
	default:
		res, err = c.verifyRaw(ctx, hw)
	}
	if res != nil {
		if perr := printResult(os.Stdout, res, resultView{JSON: c.JSON, SignatureOnly: c.SkipCollateral, TestRoots: c.TestRoots != ""}); perr != nil {
			return perr
		}
	}
	if err != nil {
		return fmt.Errorf("attestation rejected: %w", err)
	}
	return nil
}

func (c *AttestVerifyCmd) verifyDoc(ctx context.Context, cfg *config.Config, hw attest.HardwareOptions, nonce []byte) (*attest.Result, error) {
	b, err := os.ReadFile(c.Doc)
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	doc, err := attest.ParseDoc(b)
	if err != nil {
		return &attest.Result{Verdict: attest.VerdictRejected, ErrorClass: attest.ClassOf(err), Error: err.Error()}, err
	}
	policy, err := cfg.ManifestPolicy(c.Manifest, config.OfflineIf(c.Offline))
	if err != nil {
		return nil, err
	}
	v := &attest.Verifier{Manifest: policy, Hardware: hw}
	if c.Record {
		tl, err := attest.OpenTrustLog(cfg.TrustLogPath())
		if err != nil {
			return nil, err
		}
		v.TrustLog = tl
	}
	return v.VerifyDoc(ctx, doc, nonce)
}

// verifyRaw checks raw evidence: vendor signature, chain and collateral,
// and, with --manifest, the measurements against its reference values.
func (c *AttestVerifyCmd) verifyRaw(ctx context.Context, hw attest.HardwareOptions) (*attest.Result, error) {
	var binding attest.Binding
	if c.ReportData != "" {
		b, err := hex.DecodeString(strings.TrimSpace(c.ReportData))
		if err != nil || len(b) > 64 {
			return nil, fmt.Errorf("--report-data: want up to 64 bytes of hex")
		}
		var rd [64]byte
		copy(rd[:], b)
		binding.ReportData = &rd
	}
	var m *attest.Manifest
	if c.Manifest != "" {
		b, err := os.ReadFile(c.Manifest)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		if m, err = attest.ParseManifest(b); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", c.Manifest, err)
		}
		ph, err := m.CoordinatorPolicyHash()
		if err != nil {
			return nil, err
		}
		binding.PolicyHash = &ph
	}
	if hw.Now.IsZero() {
		hw.Now = time.Now()
	}
	res := &attest.Result{VerifiedAt: hw.Now, Verdict: attest.VerdictRejected}
	fail := func(err error) (*attest.Result, error) {
		res.Verdict, res.ErrorClass, res.Error = attest.VerdictRejected, attest.ClassOf(err), err.Error()
		return res, err
	}
	if c.TDXQuote != "" {
		raw, err := os.ReadFile(c.TDXQuote)
		if err != nil {
			return nil, fmt.Errorf("read quote: %w", err)
		}
		ev, err := attest.ParseTDXQuote(raw)
		if err != nil {
			return fail(err)
		}
		if err := attest.VerifyTDX(ctx, ev, hw, res); err != nil {
			return fail(err)
		}
		if m != nil || binding.ReportData != nil {
			var refs []attest.TDXReference
			if m != nil {
				refs = m.ReferenceValues.TDX
			}
			if err := checkRawTDX(ev, refs, binding, res); err != nil {
				return fail(err)
			}
		}
	} else {
		raw, err := os.ReadFile(c.SNPReport)
		if err != nil {
			return nil, fmt.Errorf("read report: %w", err)
		}
		ev, err := attest.ParseSNPReport(raw)
		if err != nil {
			return fail(err)
		}
		if err := attest.VerifySNP(ctx, ev, hw, res); err != nil {
			return fail(err)
		}
		if m != nil || binding.ReportData != nil {
			var refs []attest.SNPReference
			if m != nil {
				refs = m.ReferenceValues.SNP
			}
			if err := checkRawSNP(ev, refs, binding, res); err != nil {
				return fail(err)
			}
		}
	}
	res.Verdict = attest.VerdictAccepted
	return res, nil
}

// checkRawTDX checks measurements when a manifest was given; with only a
// report-data expectation it compares REPORT_DATA alone.
func checkRawTDX(ev *attest.TDXEvidence, refs []attest.TDXReference, b attest.Binding, res *attest.Result) error {
	if len(refs) > 0 {
		return attest.CheckTDX(ev, refs, b, res)
	}
	if len(refs) == 0 && b.PolicyHash != nil {
		return fmt.Errorf("the manifest has no TDX reference values")
	}
	return compareReportData(ev.Quote.GetTdQuoteBody().GetReportData(), b)
}

func checkRawSNP(ev *attest.SNPEvidence, refs []attest.SNPReference, b attest.Binding, res *attest.Result) error {
	if len(refs) > 0 {
		return attest.CheckSNP(ev, refs, b, res)
	}
	if len(refs) == 0 && b.PolicyHash != nil {
		return fmt.Errorf("the manifest has no SNP reference values")
	}
	return compareReportData(ev.Attestation.GetReport().GetReportData(), b)
}

func compareReportData(actual []byte, b attest.Binding) error {
	if b.ReportData == nil {
		return nil
	}
	if string(actual) != string(b.ReportData[:]) {
		return &attest.Error{Class: attest.ClassReportData, Field: "REPORT_DATA", Msg: fmt.Sprintf("evidence has %x, expected %x", actual, b.ReportData[:])}
	}
	return nil
}

// decodeBytes accepts hex or standard base64.
func decodeBytes(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return nil, errors.New("neither hex nor base64")
}

// resultView says how printResult shows a verification result.
type resultView struct {
	JSON          bool // the result as indented JSON instead of a report
	SignatureOnly bool // collateral was skipped: warn that TCB and revocation were not checked
	TestRoots     bool // verified against test roots: warn that nothing is confidential
}

// printResult writes the result as JSON or as a readable report.
func printResult(w io.Writer, res *attest.Result, view resultView) error {
	if view.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Verdict:\t%s\n", strings.ToUpper(string(res.Verdict)))
	if res.Error != "" {
		fmt.Fprintf(tw, "Reason:\t[%s] %s\n", res.ErrorClass, res.Error)
	}
	if view.TestRoots {
		fmt.Fprintf(tw, "WARNING:\tverified against TEST roots (sandbox): NOT CONFIDENTIAL\n")
	}
	if view.SignatureOnly {
		fmt.Fprintf(tw, "WARNING:\tsignature and chain only: TCB status and revocation NOT checked\n")
	}
	fmt.Fprintf(tw, "Platform:\t%s\n", wording.OrDash(string(res.Platform)))
	fmt.Fprintf(tw, "Product:\t%s\n", wording.OrDash(res.Product))
	fmt.Fprintf(tw, "Verified at:\t%s\n", res.VerifiedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Evidence SHA-256:\t%s\n", wording.OrDash(res.EvidenceSHA256))
	fmt.Fprintf(tw, "Manifest SHA-256:\t%s\n", wording.OrDash(res.ManifestSHA256))
	fmt.Fprintf(tw, "Coordinator policy:\t%s\n", wording.OrDash(res.PolicyHash))
	if res.TCBStatus != "" {
		fmt.Fprintf(tw, "TCB status:\t%s\n", res.TCBStatus)
	}
	if len(res.TCBAdvisories) > 0 {
		fmt.Fprintf(tw, "TCB advisories:\t%s\n", strings.Join(res.TCBAdvisories, ", "))
	}
	if res.TCBAcceptedBy != "" {
		fmt.Fprintf(tw, "TCB accepted by:\t%s\n", res.TCBAcceptedBy)
	}
	if len(res.Measurements) > 0 {
		fmt.Fprintf(tw, "\nMeasurement\tActual\tExpected\tMatch\n")
		for _, m := range res.Measurements {
			match := "-"
			if m.Expected != "" {
				match = map[bool]string{true: "yes", false: "NO"}[m.Match]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, short(m.Actual), short(wording.OrDash(m.Expected)), match)
		}
	}
	if len(res.TCB) > 0 {
		fmt.Fprintf(tw, "\nTCB component\tActual\tMinimum\tStatus\n")
		for _, t := range res.TCB {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, wording.OrDash(t.Actual), wording.OrDash(t.Minimum), t.Status)
		}
	}
	if len(res.Collateral) > 0 {
		fmt.Fprintf(tw, "\nCollateral\tSource\tFetched\tNext update\n")
		for _, c := range res.Collateral {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Source, fmtTime(c.FetchedAt), fmtTime(c.NextUpdate))
		}
	}
	if len(res.Checks) > 0 {
		fmt.Fprintf(tw, "\nCheck\tResult\tDetail\n")
		for _, c := range res.Checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, map[bool]string{true: "ok", false: "FAIL"}[c.OK], c.Detail)
		}
	}
	return tw.Flush()
}

// short keeps wide hex values readable in a terminal; --json has them whole.
func short(s string) string {
	if len(s) > 32 {
		return s[:16] + "…" + s[len(s)-12:]
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
