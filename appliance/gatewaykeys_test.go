package appliance_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/appliance/config"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

func rsaKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// TestReloadGatewayKeys: when the operator's key files change (a mounted
// Secret updated, a rotation by hand), Reload swaps them in without a
// restart; a broken file keeps the keys in use and says why.
func TestReloadGatewayKeys(t *testing.T) {
	dir := t.TempDir()
	signing, validation := filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "validation-key.pem")
	first := rsaKeyPEM(t)
	if err := os.WriteFile(signing, first, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.TLS.Source = apptls.SourceOff
	cfg.Gateway.GitLabURL = "https://gitlab.example.com"
	cfg.Gateway.Models.Default = "m"
	cfg.Gateway.SigningKeyFile = signing
	cfg.Gateway.ValidationKeyFile = validation
	if err := os.WriteFile(validation, first, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := appliance.New(appliance.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), APIKey: "test", Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	before := a.Keys().Signing().ID

	// A rotation: new signing key, the old one as validation key.
	if err := os.WriteFile(signing, rsaKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after := a.Keys().Signing().ID
	if after == before {
		t.Fatal("the new signing key was not loaded")
	}
	if v := a.Keys().Validation(); len(v) != 2 || v[1].ID != before {
		t.Errorf("validation keys: %d, want the new and the old one", len(v))
	}

	// A half-written file: the keys in use stay.
	if err := os.WriteFile(signing, []byte("-----BEGIN RSA PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background()); err == nil {
		t.Error("Reload accepted a broken key file")
	}
	if a.Keys().Signing().ID != after {
		t.Error("a broken key file replaced the signing key")
	}
}
