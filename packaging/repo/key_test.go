package repo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/packaging/repo"
)

// genKey makes a throwaway secret key (with passphrase pass, "" for none)
// in its own GNUPGHOME and returns it armored.
func genKey(t *testing.T, name, pass string) string {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed (apt-get install gnupg)")
	}
	home := t.TempDir()
	gpg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("gpg", append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", pass}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	gpg("--quick-generate-key", name+" <test@duo-confidential.invalid>", "ed25519", "sign", "never")
	key := gpg("--armor", "--export-secret-keys")
	_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
	return key
}

// The key comes from a file or from the environment (with a passphrase
// from either), signs, and is refused when missing, ambiguous or locked.
func TestLoadKey(t *testing.T) {
	ctx := context.Background()
	plain := genKey(t, "plain", "")
	locked := genKey(t, "locked", "correct horse")
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		src     repo.KeySource
		env     map[string]string
		wantErr string // "" when the key must load and sign
	}{
		{"file", repo.KeySource{File: write("plain.asc", plain)}, nil, ""},
		{"environment", repo.KeySource{}, map[string]string{repo.EnvKey: plain}, ""},
		{"file wins over environment", repo.KeySource{File: write("plain2.asc", plain)}, map[string]string{repo.EnvKey: "garbage"}, ""},
		{"passphrase from environment", repo.KeySource{}, map[string]string{repo.EnvKey: locked, repo.EnvPassphrase: "correct horse"}, ""},
		{"passphrase from file", repo.KeySource{File: write("locked.asc", locked), PassphraseFile: write("pass", "correct horse\n")}, nil, ""},
		{"wrong passphrase", repo.KeySource{}, map[string]string{repo.EnvKey: locked, repo.EnvPassphrase: "wrong"}, "sign"},
		{"no passphrase", repo.KeySource{}, map[string]string{repo.EnvKey: locked}, "sign"},
		{"no key", repo.KeySource{}, nil, "no release key"},
		{"two keys", repo.KeySource{File: write("two.asc", plain+locked)}, nil, "exactly one secret key"},
		{"not a key", repo.KeySource{}, map[string]string{repo.EnvKey: "not a key"}, "release key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(repo.EnvKey, "")
			t.Setenv(repo.EnvPassphrase, "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := loadAndSign(ctx, t, tc.src)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// loadAndSign loads the key, signs a file and checks the signature with
// gpgv against the exported public key.
func loadAndSign(ctx context.Context, t *testing.T, src repo.KeySource) error {
	s, err := repo.LoadKey(ctx, src)
	if err != nil {
		return err
	}
	defer s.Close()
	if len(s.Fingerprint()) != 40 {
		t.Errorf("fingerprint %q", s.Fingerprint())
	}
	dir := t.TempDir()
	msg := filepath.Join(dir, "Release")
	if err := os.WriteFile(msg, []byte("Suite: stable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.DetachSign(ctx, msg, msg+".gpg"); err != nil {
		return err
	}
	pub, err := s.PublicKey(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	keyring := filepath.Join(dir, "keyring.gpg")
	if err := os.WriteFile(keyring, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gpgv", "--keyring", keyring, msg+".gpg", msg).CombinedOutput(); err != nil {
		t.Errorf("gpgv: %v\n%s", err, out)
	}
	return nil
}
