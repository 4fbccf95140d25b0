package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
)

// sandboxFiles writes a sandbox backend's evidence, manifest, roots and
// collateral bundle to a directory, as an operator would have them.
type sandboxFiles struct {
	dir, tdxDoc, snpDoc, tdxManifest, snpManifest, roots, bundle, nonce string
}

func writeSandbox(t *testing.T) sandboxFiles {
	t.Helper()
	now := time.Now()
	be, err := attesttest.NewBackend(now)
	if err != nil {
		t.Fatal(err)
	}
	n := make([]byte, attest.NonceSize)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := sandboxFiles{
		dir:         dir,
		tdxDoc:      filepath.Join(dir, "tdx-doc.json"),
		snpDoc:      filepath.Join(dir, "snp-doc.json"),
		tdxManifest: filepath.Join(dir, "tdx-manifest.json"),
		snpManifest: filepath.Join(dir, "snp-manifest.json"),
		roots:       filepath.Join(dir, "test-roots.pem"),
		bundle:      filepath.Join(dir, "collateral.json"),
		nonce:       hex.EncodeToString(n),
	}
	tdxDoc, err := be.TDXDoc(n, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	snpDoc, err := be.SNPDoc(n, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{
		f.tdxDoc: tdxDoc, f.snpDoc: snpDoc, f.tdxManifest: be.TDXManifest, f.snpManifest: be.SNPManifest, f.roots: be.RootsPEM(),
	} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	items, err := be.Collateral()
	if err != nil {
		t.Fatal(err)
	}
	bundle := collateral.New()
	for url, r := range items {
		if _, err := bundle.Put(&attest.CollateralItem{URL: url, Header: r.Header, Body: r.Body, FetchedAt: now.Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bundle.WriteFile(f.bundle); err != nil {
		t.Fatal(err)
	}
	return f
}

func decodeResult(t *testing.T, r result) attest.Result {
	t.Helper()
	var res attest.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not a JSON result: %v\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return res
}

func TestAttestVerifyDoc(t *testing.T) {
	f := writeSandbox(t)
	state := filepath.Join(f.dir, "state")
	env := []string{"DUO_CONFIDENTIAL_STATE_DIR=" + state}
	common := func(doc, manifest, nonce string, extra ...string) []string {
		return append([]string{"attest", "verify", "--doc", doc, "--nonce", nonce, "--manifest", manifest,
			"--collateral", f.bundle, "--offline", "--json"}, extra...)
	}
	badNonce := "00" + f.nonce[2:]
	if badNonce == f.nonce {
		badNonce = "11" + f.nonce[2:]
	}
	tests := []struct {
		name      string
		args      []string
		code      int
		verdict   attest.Verdict
		class     attest.Class
		platform  attest.Platform
		stderrHas []string
	}{
		{"TDX accepted with test roots", common(f.tdxDoc, f.tdxManifest, f.nonce, "--test-roots", f.roots, "--record"), 0, attest.VerdictAccepted, "", attest.PlatformTDX, []string{"TEST vendor roots"}},
		{"SNP accepted with test roots", common(f.snpDoc, f.snpManifest, f.nonce, "--test-roots", f.roots), 0, attest.VerdictAccepted, "", attest.PlatformSNP, nil},
		{"wrong nonce", common(f.tdxDoc, f.tdxManifest, badNonce, "--test-roots", f.roots), 1, attest.VerdictRejected, attest.ClassReportData, attest.PlatformTDX, []string{"attestation rejected"}},
		{"embedded Intel root refuses test evidence", common(f.tdxDoc, f.tdxManifest, f.nonce), 1, attest.VerdictRejected, attest.ClassChain, attest.PlatformTDX, nil},
		{"embedded AMD root refuses test evidence", common(f.snpDoc, f.snpManifest, f.nonce), 1, attest.VerdictRejected, attest.ClassChain, attest.PlatformSNP, nil},
		{"manifest mismatch", common(f.tdxDoc, f.snpManifest, f.nonce, "--test-roots", f.roots), 1, attest.VerdictRejected, attest.ClassManifest, attest.PlatformTDX, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, env, tc.args...)
			r.want(t, tc.code, nil, tc.stderrHas)
			res := decodeResult(t, r)
			if res.Verdict != tc.verdict || res.ErrorClass != tc.class || res.Platform != tc.platform {
				t.Errorf("verdict %s class %q platform %s; want %s %q %s (%s)", res.Verdict, res.ErrorClass, res.Platform, tc.verdict, tc.class, tc.platform, res.Error)
			}
		})
	}
	// --record wrote the accepted TDX document to the trust log, 0600.
	fi, err := os.Stat(filepath.Join(state, statedir.TrustLogFile))
	if err != nil {
		t.Fatalf("trust log not written: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("trust log mode %v", fi.Mode().Perm())
	}
}

func TestAttestVerifyTextReport(t *testing.T) {
	f := writeSandbox(t)
	r := runBin(t, nil, "attest", "verify", "--doc", f.tdxDoc, "--nonce", f.nonce, "--manifest", f.tdxManifest,
		"--collateral", f.bundle, "--offline", "--test-roots", f.roots)
	r.want(t, 0, []string{"Verdict:", "ACCEPTED", "NOT CONFIDENTIAL", "MRTD", "TDX TCB level", "UpToDate", "TDX reference values"}, nil)
}

func TestAttestVerifyUsageErrors(t *testing.T) {
	f := writeSandbox(t)
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"doc without nonce", []string{"attest", "verify", "--doc", f.tdxDoc, "--manifest", f.tdxManifest, "--offline"}, "--nonce is required"},
		{"bad nonce encoding", []string{"attest", "verify", "--doc", f.tdxDoc, "--nonce", "not-hex!", "--manifest", f.tdxManifest, "--offline"}, "--nonce"},
		{"offline without bundle", []string{"attest", "verify", "--doc", f.tdxDoc, "--nonce", f.nonce, "--manifest", f.tdxManifest, "--offline", "--collateral", filepath.Join(f.dir, "none.json")}, "collateral"},
		{"bad time", []string{"attest", "verify", "--tdx-quote", f.roots, "--signature-only", "--at", "yesterday"}, "RFC 3339"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, nil, tc.args...)
			r.want(t, 1, nil, []string{tc.msg})
		})
	}
}

// TestAttestVerifyRealTDXQuote checks the production quote that
// go-tdx-guest ships: signature and Intel chain verify at a time when its
// PCK certificates were valid, and one flipped byte is a signature error.
func TestAttestVerifyRealTDXQuote(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "quote.dat")
	if err := os.WriteFile(good, tdxtestdata.RawQuote, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, nil, "attest", "verify", "--tdx-quote", good, "--signature-only", "--at", "2024-06-01T00:00:00Z", "--json")
	r.want(t, 0, nil, nil)
	res := decodeResult(t, r)
	if res.Verdict != attest.VerdictAccepted || res.Product != "50806f000000" {
		t.Fatalf("real quote: verdict %s product %q error %q", res.Verdict, res.Product, res.Error)
	}
	text := runBin(t, nil, "attest", "verify", "--tdx-quote", good, "--signature-only", "--at", "2024-06-01T00:00:00Z")
	text.want(t, 0, []string{"ACCEPTED", "signature and chain only", "6363b8043668a3ad"}, nil)

	flipped := append([]byte(nil), tdxtestdata.RawQuote...)
	flipped[48+200] ^= 0x01 // inside the TD quote body, covered by the signature
	bad := filepath.Join(dir, "flipped.dat")
	if err := os.WriteFile(bad, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, nil, "attest", "verify", "--tdx-quote", bad, "--signature-only", "--at", "2024-06-01T00:00:00Z", "--json")
	r.want(t, 1, nil, nil)
	if res := decodeResult(t, r); res.ErrorClass != attest.ClassSignature {
		t.Fatalf("flipped quote: class %q (%s), want signature", res.ErrorClass, res.Error)
	}
}

func TestDemo(t *testing.T) {
	for _, platform := range []string{"tdx", "sev-snp"} {
		t.Run(platform, func(t *testing.T) {
			r := runBin(t, nil, "demo", "--check", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--agent-platform-listen", "127.0.0.1:0", "--platform", platform)
			r.want(t, 0, []string{"NOT CONFIDENTIAL", "ACCEPTED", "recorded in trust log", "Sandbox reply to: Hello from the duo-confidential demo",
				"receipts verify --state-dir", "Result: VERIFIED",
				// The Code Review flow posted the sandbox's review as notes.
				"[tool] post_duo_code_review → success", "[FINISHED]", "Merge request !1 has 2 notes:", "src/cart.js:2 — Sandbox comment"},
				[]string{"NOT CONFIDENTIAL"})
			if n := countSubstr(r.stdout, "ACCEPTED"); n != 1 {
				t.Errorf("demo printed %d attestation verdicts, want 1", n)
			}
		})
	}
}

func countSubstr(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}

// TestAttestVerifyRealTDXWithCollateral runs the binary on genuine quotes
// with their genuine Intel collateral (bundles made from dcap-qvl's samples,
// see proxy/attest/testdata/real/README.md): v4 UpToDate is accepted; the v5
// (TD 1.5) quote is rejected as tcb because Intel's TCB info covers no level
// for its CPUSVN, and the report shows the TD 1.5 fields.
func TestAttestVerifyRealTDXWithCollateral(t *testing.T) {
	dir := "../../proxy/attest/testdata/real/tdx/"
	r := runBin(t, nil, "attest", "verify", "--tdx-quote", dir+"dcap-qvl-tdx_quote.dat", "--collateral", dir+"dcap-qvl-tdx_quote.bundle.json", "--offline", "--at", "2025-07-01T00:00:00Z", "--json")
	r.want(t, 0, nil, nil)
	if res := decodeResult(t, r); res.Verdict != attest.VerdictAccepted || res.TCBStatus != "UpToDate" {
		t.Fatalf("v4: verdict %s status %q error %q", res.Verdict, res.TCBStatus, res.Error)
	}
	r = runBin(t, nil, "attest", "verify", "--tdx-quote", dir+"dcap-qvl-tdx_quote_outdated.dat", "--collateral", dir+"dcap-qvl-tdx_quote_outdated.bundle.json", "--offline", "--at", "2026-03-01T00:00:00Z")
	r.want(t, 1, []string{"REJECTED", "[tcb]", "TCB status:", "Unsupported", "TEE_TCB_SVN2", "MR_SERVICETD", "quote v5, TDX 1.5 body"}, nil)
	// The v4 collateral is past its nextUpdate a month later.
	r = runBin(t, nil, "attest", "verify", "--tdx-quote", dir+"dcap-qvl-tdx_quote.dat", "--collateral", dir+"dcap-qvl-tdx_quote.bundle.json", "--offline", "--at", "2025-07-25T00:00:00Z", "--json")
	r.want(t, 1, nil, nil)
	if res := decodeResult(t, r); res.ErrorClass != attest.ClassCollateralStale {
		t.Fatalf("expired collateral: class %q (%s)", res.ErrorClass, res.Error)
	}
}

// The status policy comes from the configuration; a status that can never
// be accepted is refused before anything is verified.
func TestAttestVerifyTCBPolicyFromConfig(t *testing.T) {
	dir := "../../proxy/attest/testdata/real/tdx/"
	r := runBin(t, []string{"DUO_CONFIDENTIAL_ATTESTATION_TCB_POLICY_TDX_ACCEPT_STATUSES=Revoked"},
		"attest", "verify", "--tdx-quote", dir+"dcap-qvl-tdx_quote.dat", "--signature-only", "--at", "2025-07-01T00:00:00Z")
	r.want(t, 1, nil, []string{"attestation.tcb_policy", "Revoked"})
	// An explicit (valid) policy leaves an UpToDate platform accepted.
	r = runBin(t, []string{"DUO_CONFIDENTIAL_ATTESTATION_TCB_POLICY_TDX_ACCEPT_STATUSES=SWHardeningNeeded", "DUO_CONFIDENTIAL_ATTESTATION_TCB_POLICY_TDX_ACCEPT_ADVISORIES=INTEL-SA-00615"},
		"attest", "verify", "--tdx-quote", dir+"dcap-qvl-tdx_quote.dat", "--collateral", dir+"dcap-qvl-tdx_quote.bundle.json", "--offline", "--at", "2025-07-01T00:00:00Z")
	r.want(t, 0, []string{"ACCEPTED", "TCB status:", "UpToDate"}, nil)
}
