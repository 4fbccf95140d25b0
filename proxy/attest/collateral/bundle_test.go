package collateral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

func TestBundleRoundTrip(t *testing.T) {
	now := time.Now()
	b := New()
	tcb := item(tcbURL, tcbInfoJSON(now, now.Add(30*24*time.Hour)), now)
	tcb.Header = issuerHeader()
	for _, it := range []*attest.CollateralItem{tcb, item(qeURL, []byte{0, 1, 2, 255}, now.Add(-time.Hour))} {
		if ch, err := b.Put(it); err != nil || ch.Kind != Added {
			t.Fatalf("Put(%s) = %+v, %v; want added", it.URL, ch, err)
		}
	}
	path := filepath.Join(t.TempDir(), "state", "collateral.json")
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("bundle mode = %v, want 0644", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != 2 || got.Created().IsZero() {
		t.Fatalf("loaded %d items, created %v", got.Len(), got.Created())
	}
	it, err := got.Collateral(context.Background(), tcbURL)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(it.Body, tcb.Body) || !it.FetchedAt.Equal(tcb.FetchedAt) || it.Source != SourceBundle ||
		it.Header.Get("Tcb-Info-Issuer-Chain") != testIssuer {
		t.Errorf("round trip changed the item: %+v", it)
	}
	// The returned item is a copy: changing it must not change the bundle.
	it.Body[0] = 'X'
	it.Header.Set("Tcb-Info-Issuer-Chain", "tampered")
	again, _ := got.Collateral(context.Background(), tcbURL)
	if again.Body[0] == 'X' || again.Header.Get("Tcb-Info-Issuer-Chain") != testIssuer {
		t.Error("Collateral returned shared state, not a copy")
	}
	// Encoding is deterministic so that re-exports diff cleanly.
	m1, _ := got.Marshal()
	m2, _ := got.Marshal()
	if !bytes.Equal(m1, m2) {
		t.Error("Marshal is not deterministic")
	}
	_, err = got.Collateral(context.Background(), pckCRLURL)
	if !errors.Is(err, attest.ErrCollateralNotFound) || !strings.Contains(err.Error(), pckCRLURL) {
		t.Errorf("unknown URL: err = %v, want ErrCollateralNotFound naming the URL", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

// wire builds a bundle file from raw item JSON fragments.
func wire(format string, items ...string) []byte {
	return fmt.Appendf(nil, `{"format":%q,"created":"2026-01-02T03:04:05Z","items":[%s]}`, format, strings.Join(items, ","))
}

func wireItemJSON(url string, body []byte, sum string) string {
	if sum == "" {
		s := sha256.Sum256(body)
		sum = hex.EncodeToString(s[:])
	}
	return fmt.Sprintf(`{"url":%q,"header":{"tcb-info-issuer-chain":["x"]},"body":%q,"fetched_at":"2026-01-02T03:04:05Z","sha256":%q}`,
		url, base64.StdEncoding.EncodeToString(body), sum)
}

func TestParseStrict(t *testing.T) {
	good := wireItemJSON(tcbURL, []byte("body"), "")
	if b, err := Parse(wire(Format, good)); err != nil || b.Len() != 1 {
		t.Fatalf("valid bundle: %v", err)
	}
	// Header keys are canonicalised on load so exact-key lookups work.
	b, _ := Parse(wire(Format, good))
	it, _ := b.Collateral(context.Background(), tcbURL)
	if it.Header["Tcb-Info-Issuer-Chain"] == nil {
		t.Errorf("header not canonicalised: %v", it.Header)
	}
	badB64 := strings.Replace(good, base64.StdEncoding.EncodeToString([]byte("body")), "!!notbase64", 1)
	oversized := append([]byte(`{"format":"`+Format+`","items":[],"pad":"`), bytes.Repeat([]byte("a"), MaxBundleSize)...)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"bad format version", "format", wire("duo-confidential-collateral/2", good)},
		{"missing format", "format", []byte(`{"items":[]}`)},
		{"duplicate URL", "duplicate URL", wire(Format, good, good)},
		{"bad base64", "base64", wire(Format, badB64)},
		{"sha256 mismatch", "sha256 mismatch", wire(Format, wireItemJSON(tcbURL, []byte("body"), strings.Repeat("00", 32)))},
		{"sha256 not hex", "sha256", wire(Format, wireItemJSON(tcbURL, []byte("body"), "xyz"))},
		{"http URL", "https", wire(Format, wireItemJSON("http://api.trustedservices.intel.com/x", []byte("b"), ""))},
		{"relative URL", "https", wire(Format, wireItemJSON("/tcb", []byte("b"), ""))},
		{"missing fetched_at", "fetched_at", wire(Format, strings.Replace(good, `"fetched_at":"2026-01-02T03:04:05Z"`, `"fetched_at":""`, 1))},
		{"bad fetched_at", "fetched_at", wire(Format, strings.Replace(good, `2026-01-02T03:04:05Z","sha256`, `yesterday","sha256`, 1))},
		{"unknown field", "unknown field", []byte(`{"format":"` + Format + `","items":[],"extra":1}`)},
		{"trailing data", "trailing", append(wire(Format, good), []byte(`{}`)...)},
		{"not JSON", "decode", []byte("PK\x03\x04")},
		{"oversized", "exceeds", oversized},
		{"header case clash", "twice", wire(Format, strings.Replace(good, `{"tcb-info-issuer-chain":["x"]}`, `{"a":["1"],"A":["2"]}`, 1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLoadOversizedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, bytes.Repeat([]byte(" "), MaxBundleSize+10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want size limit", err)
	}
}

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	installed := New()
	mustPut(t, installed, item(tcbURL, []byte("old tcb"), t0))
	mustPut(t, installed, item(qeURL, []byte("newer qe"), t0.Add(48*time.Hour)))
	mustPut(t, installed, item(pckCRLURL, []byte("same crl"), t0))

	incoming := New()
	mustPut(t, incoming, item(tcbURL, []byte("new tcb"), t0.Add(24*time.Hour)))
	mustPut(t, incoming, item(qeURL, []byte("older qe"), t0.Add(24*time.Hour)))
	mustPut(t, incoming, item(pckCRLURL, []byte("same crl"), t0))
	mustPut(t, incoming, item(chainURL, []byte("chain"), t0))

	changes := installed.Merge(incoming)
	want := map[string]ChangeKind{tcbURL: Updated, qeURL: KeptNewer, pckCRLURL: Unchanged, chainURL: Added}
	if len(changes) != len(want) {
		t.Fatalf("changes = %+v", changes)
	}
	for _, c := range changes {
		if want[c.URL] != c.Kind {
			t.Errorf("%s: %s, want %s", c.URL, c.Kind, want[c.URL])
		}
	}
	for url, body := range map[string]string{tcbURL: "new tcb", qeURL: "newer qe", chainURL: "chain"} {
		it, err := installed.Collateral(context.Background(), url)
		if err != nil || string(it.Body) != body {
			t.Errorf("%s after merge: %q, %v; want %q", url, it.Body, err, body)
		}
	}
	if installed.Merge(installed) != nil {
		t.Error("self-merge must be a no-op")
	}
}

func TestPutRejects(t *testing.T) {
	b := New()
	if _, err := b.Put(nil); err == nil {
		t.Error("nil item accepted")
	}
	if _, err := b.Put(item("http://x/y", nil, time.Now())); err == nil {
		t.Error("http URL accepted")
	}
	if _, err := b.Put(&attest.CollateralItem{URL: tcbURL}); err == nil {
		t.Error("item without fetch time accepted")
	}
}

func TestWriteFileLeavesDirectoryMode(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := New()
	mustPut(t, b, item(tcbURL, []byte("x"), time.Now()))
	path := filepath.Join(dir, "export.json")
	if err := b.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	di, _ := os.Stat(dir)
	fi, _ := os.Stat(path)
	if di.Mode().Perm() != 0o755 || fi.Mode().Perm() != 0o644 {
		t.Errorf("dir %v file %v, want 0755 and 0644", di.Mode().Perm(), fi.Mode().Perm())
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".export.json.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func mustPut(t *testing.T, b *Bundle, it *attest.CollateralItem) {
	t.Helper()
	if _, err := b.Put(it); err != nil {
		t.Fatal(err)
	}
}
