package config

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// TestListenerClientTLSCreatesNothing: the client configuration reads the
// local CA if it exists and never creates it.
func TestListenerClientTLSCreatesNothing(t *testing.T) {
	cfg := Default()
	cfg.StateDir = t.TempDir()
	tc, err := cfg.ListenerClientTLS()
	if err != nil || tc == nil {
		t.Fatalf("before the CA exists: %v, %v", tc, err)
	}
	if entries, _ := os.ReadDir(cfg.StateDir); len(entries) != 0 {
		t.Fatalf("created %v", entries)
	}
	if tc.ServerName != cfg.TLSNames()[0] || tc.NextProtos[0] != "http/1.1" || tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("config %q %v %x", tc.ServerName, tc.NextProtos, tc.MinVersion)
	}

	ca, err := apptls.OpenLocalCA(filepath.Join(cfg.StateDir, statedir.LocalCADir), apptls.LocalCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, cert := cfg.LocalCAPaths(); cert != ca.CertificateFile() {
		t.Errorf("LocalCAPaths cert %s, CA writes %s", cert, ca.CertificateFile())
	}
	tc, err = cfg.ListenerClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Certificate().Verify(x509.VerifyOptions{Roots: tc.RootCAs}); err != nil {
		t.Errorf("the local CA is not among the roots: %v", err)
	}

	cfg.TLS.Source = apptls.SourceOff
	if tc, err := cfg.ListenerClientTLS(); tc != nil || err != nil {
		t.Errorf("tls.source off: %v, %v; want nil, nil", tc, err)
	}
}

func TestReadOnlyCollateralSource(t *testing.T) {
	cfg := Default()
	cfg.StateDir = t.TempDir()
	cfg.Attestation.Collateral.Bundle = filepath.Join(cfg.StateDir, statedir.CollateralFile)
	if _, err := cfg.ReadOnlyCollateralSource(); err != nil {
		t.Fatalf("online, no bundle: %v", err)
	}
	cfg.Attestation.Collateral.Online = false
	if _, err := cfg.ReadOnlyCollateralSource(); err == nil {
		t.Error("offline without a bundle: want an error")
	}
	if entries, _ := os.ReadDir(cfg.StateDir); len(entries) != 0 {
		t.Errorf("created %v", entries)
	}
}

// TestEnvProxyTokenIsNotAnOverride: the doctor's token variable does not
// make the configuration invalid.
func TestEnvProxyTokenIsNotAnOverride(t *testing.T) {
	if _, err := Parse("config.yaml", nil, []string{EnvProxyToken + "=secret"}); err != nil {
		t.Errorf("Parse with %s: %v", EnvProxyToken, err)
	}
	if _, err := Parse("config.yaml", nil, []string{EnvPrefix + "PROXY_TOKENS=secret"}); err == nil {
		t.Error("a misspelt variable is accepted")
	}
}
