package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
)

// The binary tests use binPath and runBin from cli_test.go, whose TestMain
// builds the real duo-confidential once.

const (
	tcbURL = "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"
	qeURL  = "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"
)

// runCLI runs the binary (see runBin) and returns stdout, stderr and the
// exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	r := runBin(t, nil, args...)
	return r.stdout, r.stderr, r.code
}

// writeBundle writes a TDX bundle whose items were fetched at fetched and
// are valid for 30 days from then.
func writeBundle(t *testing.T, path string, fetched time.Time) {
	t.Helper()
	b := collateral.New()
	for _, u := range []string{tcbURL, qeURL} {
		key := "tcbInfo"
		if u == qeURL {
			key = "enclaveIdentity"
		}
		body := fmt.Appendf(nil, `{%q:{"issueDate":%q,"nextUpdate":%q},"signature":"00"}`, key,
			fetched.UTC().Format(time.RFC3339), fetched.Add(30*24*time.Hour).UTC().Format(time.RFC3339))
		if _, err := b.Put(&attest.CollateralItem{URL: u, Body: body, FetchedAt: fetched}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes a minimal configuration with its state directory (not
// yet created) under dir.
func writeConfig(t *testing.T, dir string) (cfgPath, stateDir string) {
	t.Helper()
	stateDir = filepath.Join(dir, "state")
	cfgPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "state_dir: %s\n", stateDir), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, stateDir
}

func TestCLIImportAndShow(t *testing.T) {
	dir := t.TempDir()
	cfg, state := writeConfig(t, dir)
	bundle := filepath.Join(dir, "export.json")
	writeBundle(t, bundle, time.Now().Add(-time.Hour))

	out, errOut, code := runCLI(t, "--config", cfg, "collateral", "import", bundle)
	if code != 0 || !strings.Contains(out, "added") || !strings.Contains(out, "TD QE identity") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	installed := filepath.Join(state, statedir.CollateralFile)
	for path, want := range map[string]os.FileMode{state: 0o700, installed: 0o644} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", path, fi, err, want)
		}
	}
	out, _, code = runCLI(t, "--config", cfg, "collateral", "import", bundle)
	if code != 0 || !strings.Contains(out, "2 unchanged") {
		t.Errorf("re-import: exit %d\n%s", code, out)
	}

	out, errOut, code = runCLI(t, "--config", cfg, "collateral", "show", "--json")
	var shown struct {
		File  string
		OK    bool
		Items []struct{ Name, Status string }
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || code != 0 || !shown.OK || len(shown.Items) != 2 ||
		shown.File != installed || shown.Items[0].Status != "OK" {
		t.Errorf("show --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	out, _, code = runCLI(t, "--config", cfg, "collateral", "show")
	if code != 0 || !strings.Contains(out, "TDX TCB info (FMSPC 50806f000000)") || !strings.Contains(out, "NEXT UPDATE") {
		t.Errorf("show table: exit %d\n%s", code, out)
	}
}

func TestCLIStaleBundle(t *testing.T) {
	dir := t.TempDir()
	cfg, state := writeConfig(t, dir)
	bundle := filepath.Join(dir, "old.json")
	writeBundle(t, bundle, time.Now().Add(-40*24*time.Hour))

	_, errOut, code := runCLI(t, "--config", cfg, "collateral", "import", bundle)
	if code == 0 || !strings.Contains(errOut, "--allow-stale") || !strings.Contains(errOut, "collateral export") {
		t.Errorf("stale import: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(state, statedir.CollateralFile)); err == nil {
		t.Error("stale bundle was installed without --allow-stale")
	}
	if out, errOut, code := runCLI(t, "--config", cfg, "collateral", "import", "--allow-stale", bundle); code != 0 {
		t.Fatalf("--allow-stale: exit %d\n%s%s", code, out, errOut)
	}

	out, _, code := runCLI(t, "--config", cfg, "collateral", "show", "--json")
	var shown struct {
		OK    bool
		Items []struct{ Status string }
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || code == 0 || shown.OK || shown.Items[0].Status != "EXPIRED" {
		t.Errorf("show --json on stale bundle: exit %d, %v\n%s", code, err, out)
	}
	// An explicit file needs no configuration; the default maximum age applies.
	out, _, code = runCLI(t, "collateral", "show", bundle)
	if code != 1 || !strings.Contains(out, "EXPIRED") {
		t.Errorf("show FILE without config: exit %d\n%s", code, out)
	}
	if _, errOut, code := runCLI(t, "--config", filepath.Join(dir, "missing.yaml"), "collateral", "show", bundle); code == 0 ||
		!strings.Contains(errOut, "does not exist") {
		t.Errorf("show with a missing named config: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := runCLI(t, "--config", cfg, "collateral", "show", filepath.Join(dir, "none.json")); code == 0 ||
		!strings.Contains(errOut, "collateral import") {
		t.Errorf("show missing file: exit %d\n%s", code, errOut)
	}
}

// mapSource serves fixed bodies; URLs not in the map fail with a real error.
type mapSource map[string]string

func (m mapSource) Collateral(_ context.Context, url string) (*attest.CollateralItem, error) {
	body, ok := m[url]
	if !ok {
		return nil, fmt.Errorf("fetch %s: HTTP status 404 Not Found", url)
	}
	return &attest.CollateralItem{URL: url, Body: []byte(body), FetchedAt: time.Now(), Source: "online"}, nil
}

func TestRunExport(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.json")
	writeBundle(t, existing, time.Now().Add(-10*24*time.Hour))
	src := mapSource{tcbURL: `{"tcbInfo":{"nextUpdate":"2099-01-01T00:00:00Z"}}`, collateral.IntelRootCACRLURL: "crl"}
	outPath := filepath.Join(dir, "new.json")
	var out bytes.Buffer
	c := &CollateralExportCmd{Out: outPath, URL: []string{tcbURL, collateral.IntelRootCACRLURL, tcbURL}, Merge: existing}
	if err := runExport(context.Background(), c, src, 0, &out); err != nil {
		t.Fatal(err)
	}
	b, err := collateral.Load(outPath)
	if err != nil || b.Len() != 3 {
		t.Fatalf("exported bundle: %v, %d items", err, b.Len())
	}
	it, _ := b.Collateral(context.Background(), tcbURL)
	if !strings.Contains(string(it.Body), "2099") {
		t.Error("fresh fetch did not replace the merged older item")
	}
	if fi, _ := os.Stat(outPath); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if !strings.Contains(out.String(), "wrote 3 items (2 fetched)") {
		t.Errorf("summary:\n%s", out.String())
	}

	failing := filepath.Join(dir, "failing.json")
	c = &CollateralExportCmd{Out: failing, URL: []string{tcbURL, qeURL}}
	if err := runExport(context.Background(), c, src, 0, &out); err == nil || !strings.Contains(err.Error(), qeURL) {
		t.Errorf("fetch failure: err = %v", err)
	}
	if _, err := os.Stat(failing); err == nil {
		t.Error("a partial bundle was written")
	}
	if err := runExport(context.Background(), &CollateralExportCmd{Out: failing}, src, 0, &out); err == nil {
		t.Error("export without inputs succeeded")
	}
	bad := filepath.Join(dir, "doc.json")
	_ = os.WriteFile(bad, []byte(`{}`), 0o644)
	if err := runExport(context.Background(), &CollateralExportCmd{Out: failing, Doc: []string{bad}}, src, 0, &out); err == nil ||
		!strings.Contains(err.Error(), bad) {
		t.Errorf("bad document: err = %v", err)
	}
}

func TestCollateralSource(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Attestation.Collateral.Bundle = filepath.Join(cfg.StateDir, statedir.CollateralFile)

	if _, err := cfg.CollateralSource("", config.Offline); err == nil || !strings.Contains(err.Error(), "collateral export") {
		t.Errorf("offline without bundle: err = %v", err)
	}
	writeBundle(t, filepath.Join(dir, "b.json"), time.Now())
	if src, err := cfg.CollateralSource(filepath.Join(dir, "b.json"), config.Offline); err != nil {
		t.Error(err)
	} else if _, ok := src.(*collateral.Bundle); !ok {
		t.Errorf("offline source is %T, want *collateral.Bundle", src)
	}
	if src, err := cfg.CollateralSource("", config.Online); err != nil {
		t.Error(err)
	} else if _, ok := src.(*collateral.Cache); !ok {
		t.Errorf("online source is %T, want *collateral.Cache", src)
	}
	if src, err := cfg.CollateralSource(filepath.Join(dir, "b.json"), config.Online); err != nil {
		t.Error(err)
	} else if _, ok := src.(collateral.Chain); !ok {
		t.Errorf("online source with explicit bundle is %T, want collateral.Chain", src)
	}
}
