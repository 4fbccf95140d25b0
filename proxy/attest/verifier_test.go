package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/verifiertest"
)

var testNow = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func nonce(t testing.TB) []byte {
	n := make([]byte, attest.NonceSize)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// parseDoc returns a function taking a document generator's results, so
// calls read parseDoc(t)(b.TDXDoc(...)).
func parseDoc(t testing.TB) func([]byte, error) *attest.Doc {
	return func(raw []byte, err error) *attest.Doc {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		d, err := attest.ParseDoc(raw)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
}

func TestVerifyDocTDXAccepted(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	v := verifiertest.New(t, b, b.TDXManifest, testNow)
	v.TrustLog, _ = attest.OpenTrustLog(filepath.Join(t.TempDir(), "trust-log.jsonl"))
	n := nonce(t)
	doc := parseDoc(t)(b.TDXDoc(n, nil, nil))
	res, err := v.VerifyDoc(context.Background(), doc, n)
	if err != nil {
		t.Fatalf("VerifyDoc: %v\nchecks: %+v", err, res.Checks)
	}
	if res.Verdict != attest.VerdictAccepted || res.Platform != attest.PlatformTDX {
		t.Fatalf("verdict %s platform %s", res.Verdict, res.Platform)
	}
	sum := sha256.Sum256(b.TDXManifest)
	if res.ManifestSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest hash %s", res.ManifestSHA256)
	}
	if res.PolicyHash != hex.EncodeToString(b.Coordinator.PolicyHash[:]) {
		t.Errorf("policy hash %s", res.PolicyHash)
	}
	for _, m := range res.Measurements {
		if m.Expected != "" && !m.Match {
			t.Errorf("accepted result with mismatching %s", m.Name)
		}
	}
	entries, err := v.TrustLog.Entries()
	if err != nil || len(entries) != 1 || entries[0].ManifestSHA256 != res.ManifestSHA256 {
		t.Fatalf("trust log after acceptance: %+v, %v", entries, err)
	}
}

func TestVerifyDocRejections(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	otherManifest := bytes.Replace(b.TDXManifest, []byte(`"Xfam":"`), []byte(`"Xfam": "`), 1)
	tests := []struct {
		name   string
		setup  func(v *attest.Verifier)
		doc    func(n []byte) ([]byte, error)
		nonce  func(n []byte) []byte
		class  attest.Class
		logged bool
	}{
		{
			name:  "wrong nonce",
			nonce: func(n []byte) []byte { m := bytes.Clone(n); m[0] ^= 1; return m },
			class: attest.ClassReportData,
		},
		{
			name:  "short nonce",
			nonce: func(n []byte) []byte { return n[:16] },
			class: attest.ClassReportData,
		},
		{
			name: "report data binds other CAs",
			doc: func(n []byte) ([]byte, error) {
				return b.TDXDoc(n, nil, func(o *attesttest.TDXQuoteOptions) { o.ReportData[5] ^= 0xff })
			},
			class: attest.ClassReportData,
		},
		{
			name:  "pinned manifest differs",
			setup: func(v *attest.Verifier) { v.Manifest.Pinned = otherManifest },
			class: attest.ClassManifest,
		},
		{
			name: "manifest not allowlisted",
			setup: func(v *attest.Verifier) {
				v.Manifest = attest.ManifestPolicy{Mode: attest.ModeAllowlist, AllowedSHA256: []string{strings.Repeat("ab", 32)}}
			},
			class: attest.ClassManifest,
		},
		{
			name: "dynamic manifest differs",
			setup: func(v *attest.Verifier) {
				v.Manifest = attest.ManifestPolicy{Mode: attest.ModeDynamic, Fetcher: attest.StaticManifest(otherManifest)}
			},
			class: attest.ClassManifest,
		},
		{
			name: "history longer than allowed",
			doc: func(n []byte) ([]byte, error) {
				return b.TDXDoc(n, [][]byte{otherManifest, b.TDXManifest}, nil)
			},
			class: attest.ClassManifest,
		},
		{
			name: "MRTD changed",
			doc: func(n []byte) ([]byte, error) {
				return b.TDXDoc(n, nil, func(o *attesttest.TDXQuoteOptions) { o.MrTd[0] ^= 1 })
			},
			class: attest.ClassMeasurement,
		},
		{
			name: "MRCONFIGID is not the coordinator policy",
			doc: func(n []byte) ([]byte, error) {
				return b.TDXDoc(n, nil, func(o *attesttest.TDXQuoteOptions) { o.MrConfigID[0] ^= 1 })
			},
			class: attest.ClassMeasurement,
		},
		{
			name: "debug TD",
			doc: func(n []byte) ([]byte, error) {
				return b.TDXDoc(n, nil, func(o *attesttest.TDXQuoteOptions) { o.TdAttributes[0] |= 1 })
			},
			class: attest.ClassDebug,
		},
		{
			name:  "real Intel root",
			setup: func(v *attest.Verifier) { v.Hardware.Roots = nil },
			class: attest.ClassChain,
		},
		{
			name:  "stale collateral",
			setup: func(v *attest.Verifier) { v.Hardware.MaxCollateralAge = time.Minute },
			class: attest.ClassCollateralStale,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := verifiertest.New(t, b, b.TDXManifest, testNow)
			tl, err := attest.OpenTrustLog(filepath.Join(t.TempDir(), "trust-log.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			v.TrustLog = tl
			if tc.setup != nil {
				tc.setup(v)
			}
			n := nonce(t)
			mk := tc.doc
			if mk == nil {
				mk = func(n []byte) ([]byte, error) { return b.TDXDoc(n, nil, nil) }
			}
			doc := parseDoc(t)(mk(n))
			asked := n
			if tc.nonce != nil {
				asked = tc.nonce(n)
			}
			res, err := v.VerifyDoc(context.Background(), doc, asked)
			if !errors.Is(err, &attest.Error{Class: tc.class}) {
				t.Fatalf("err = %v (class %q), want class %q", err, attest.ClassOf(err), tc.class)
			}
			if res.Verdict != attest.VerdictRejected || res.ErrorClass != tc.class {
				t.Errorf("result verdict %s class %s", res.Verdict, res.ErrorClass)
			}
			if entries, _ := tl.Entries(); len(entries) != 0 {
				t.Errorf("a rejected document was recorded in the trust log")
			}
		})
	}
}

func TestVerifyDocRollbackNeedsApproval(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	tl, err := attest.OpenTrustLog(filepath.Join(t.TempDir(), "trust-log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	old := verifiertest.New(t, b, b.TDXManifest, testNow)
	old.TrustLog = tl
	verify := func(v *attest.Verifier) error {
		n := nonce(t)
		_, err := v.VerifyDoc(context.Background(), parseDoc(t)(b.TDXDoc(n, [][]byte{v.Manifest.Pinned}, nil)), n)
		return err
	}
	if err := verify(old); err != nil {
		t.Fatal(err)
	}
	// A newer manifest with the same reference values (re-encoded) is accepted...
	newer := bytes.Replace(b.TDXManifest, []byte(`"Xfam":"`), []byte(`"Xfam": "`), 1)
	nv := verifiertest.New(t, b, newer, testNow)
	nv.TrustLog = tl
	if err := verify(nv); err != nil {
		t.Fatalf("newer manifest: %v", err)
	}
	// ...and going back to the superseded one needs the operator's approval.
	if err := verify(old); !errors.Is(err, attest.ErrRollback) {
		t.Fatalf("rollback: err = %v, want ClassRollback", err)
	}
	sum := sha256.Sum256(b.TDXManifest)
	old.Manifest.ApprovedRollbacks = []string{hex.EncodeToString(sum[:])}
	if err := verify(old); err != nil {
		t.Fatalf("approved rollback: %v", err)
	}
	entries, err := tl.Entries()
	if err != nil || len(entries) != 3 {
		t.Fatalf("trust log: %d entries, %v; want 3", len(entries), err)
	}
}

func BenchmarkVerifyDocTDX(b *testing.B) {
	be := verifiertest.Backend(b, testNow)
	v := verifiertest.New(b, be, be.TDXManifest, testNow)
	n := nonce(b)
	raw, err := be.TDXDoc(n, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		doc, err := attest.ParseDoc(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.VerifyDoc(context.Background(), doc, n); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVerifyDocSNP(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	tests := []struct {
		name   string
		mutate func(*attesttest.SNPReportOptions)
		setup  func(*attest.Verifier)
		class  attest.Class
	}{
		{name: "accepted"},
		{name: "measurement changed", mutate: func(o *attesttest.SNPReportOptions) { o.Measurement[0] ^= 1 }, class: attest.ClassMeasurement},
		{name: "HOST_DATA is not the coordinator policy", mutate: func(o *attesttest.SNPReportOptions) { o.HostData[0] ^= 1 }, class: attest.ClassMeasurement},
		{name: "debug guest", mutate: func(o *attesttest.SNPReportOptions) { o.Policy |= 1 << 19 }, class: attest.ClassDebug},
		{name: "report data binds another nonce", mutate: func(o *attesttest.SNPReportOptions) { o.ReportData[0] ^= 1 }, class: attest.ClassReportData},
		{name: "real AMD roots", setup: func(v *attest.Verifier) { v.Hardware.Roots = nil }, class: attest.ClassChain},
		{name: "TDX manifest for SNP evidence", setup: func(v *attest.Verifier) { v.Manifest.Pinned = b.TDXManifest }, class: attest.ClassManifest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := verifiertest.New(t, b, b.SNPManifest, testNow)
			if tc.setup != nil {
				tc.setup(v)
			}
			n := nonce(t)
			doc := parseDoc(t)(b.SNPDoc(n, nil, tc.mutate))
			if doc.Platform != attest.PlatformSNP {
				t.Fatalf("platform %s", doc.Platform)
			}
			res, err := v.VerifyDoc(context.Background(), doc, n)
			if tc.class == "" {
				if err != nil || res.Verdict != attest.VerdictAccepted {
					t.Fatalf("VerifyDoc: %v", err)
				}
				return
			}
			if !errors.Is(err, &attest.Error{Class: tc.class}) {
				t.Fatalf("err = %v (class %q), want class %q", err, attest.ClassOf(err), tc.class)
			}
		})
	}
}

func BenchmarkVerifyDocSNP(b *testing.B) {
	be := verifiertest.Backend(b, testNow)
	v := verifiertest.New(b, be, be.SNPManifest, testNow)
	n := nonce(b)
	raw, err := be.SNPDoc(n, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		doc, err := attest.ParseDoc(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.VerifyDoc(context.Background(), doc, n); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyDocWrongCA swaps the mesh CA the coordinator reports: REPORT_DATA
// no longer binds it, so the document is refused.
func TestVerifyDocWrongCA(t *testing.T) {
	b := verifiertest.Backend(t, testNow)
	v := verifiertest.New(t, b, b.TDXManifest, testNow)
	n := nonce(t)
	doc := parseDoc(t)(b.TDXDoc(n, nil, nil))
	other, err := attesttest.NewCoordinator(testNow)
	if err != nil {
		t.Fatal(err)
	}
	for name, swap := range map[string]func(*attest.Doc){
		"mesh CA": func(d *attest.Doc) { d.MeshCA = other.MeshCAPEM },
		"root CA": func(d *attest.Doc) { d.RootCA = other.RootCAPEM },
	} {
		t.Run(name, func(t *testing.T) {
			d := *doc
			swap(&d)
			if _, err := v.VerifyDoc(context.Background(), &d, n); !errors.Is(err, attest.ErrReportData) {
				t.Fatalf("err = %v, want ClassReportData", err)
			}
		})
	}
	// A mesh CA that is not a CA certificate is malformed, not merely unbound.
	d := *doc
	d.MeshCA = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	if _, err := v.VerifyDoc(context.Background(), &d, n); !errors.Is(err, attest.ErrMalformed) {
		t.Fatalf("garbage mesh CA: err = %v, want ClassMalformed", err)
	}
}
