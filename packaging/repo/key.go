package repo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Environment variables the release key and its passphrase may come from
// (LoadKey reads them when KeySource names no file).
const (
	EnvKey        = "DUO_RELEASE_KEY"            // the OpenPGP secret key, armored
	EnvPassphrase = "DUO_RELEASE_KEY_PASSPHRASE" // its passphrase, if it has one
)

// KeySource says where the release key comes from at build time. The key is
// never part of the repository: a file on the release machine (an offline
// medium) or an environment variable set by the release job.
type KeySource struct {
	File           string // armored or binary OpenPGP secret key; wins over EnvKey
	PassphraseFile string // file holding the passphrase; else EnvPassphrase
}

// Signer signs with the release key through gpg in a private, temporary
// GNUPGHOME, so the build machine's own keyrings are never read or changed.
type Signer struct {
	home        string
	fingerprint string
	passFile    string   // "" when the key has no passphrase
	alsoTrusted []string // fingerprints of public keys published beside it
}

// LoadKey imports the release key into a fresh GNUPGHOME. Close removes it.
func LoadKey(ctx context.Context, src KeySource) (*Signer, error) {
	var key []byte
	switch {
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("read release key: %w", err)
		}
		key = b
	case os.Getenv(EnvKey) != "":
		key = []byte(os.Getenv(EnvKey))
	default:
		return nil, fmt.Errorf("no release key: pass -key-file or set %s", EnvKey)
	}
	// A short path: gpg-agent's socket lives in it and must fit sun_path.
	home, err := os.MkdirTemp("", "duo-gpg-")
	if err != nil {
		return nil, fmt.Errorf("create GNUPGHOME: %w", err)
	}
	s := &Signer{home: home}
	var pass []byte
	switch {
	case src.PassphraseFile != "":
		if pass, err = os.ReadFile(src.PassphraseFile); err != nil {
			s.Close()
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
	case os.Getenv(EnvPassphrase) != "":
		pass = []byte(os.Getenv(EnvPassphrase))
	}
	if len(pass) > 0 {
		s.passFile = filepath.Join(home, "passphrase")
		if err := os.WriteFile(s.passFile, bytes.TrimRight(pass, "\r\n"), 0o600); err != nil {
			s.Close()
			return nil, fmt.Errorf("write passphrase: %w", err)
		}
	}
	if _, err := s.gpg(ctx, key, "--import"); err != nil {
		s.Close()
		return nil, fmt.Errorf("import release key: %w", err)
	}
	fprs, err := s.fingerprints(ctx, "--list-secret-keys", "sec")
	if err != nil {
		s.Close()
		return nil, err
	}
	if len(fprs) != 1 {
		s.Close()
		return nil, fmt.Errorf("release key: want exactly one secret key, found %d", len(fprs))
	}
	s.fingerprint = fprs[0]
	return s, nil
}

// Fingerprint is the release key's primary key fingerprint (40 hex digits).
func (s *Signer) Fingerprint() string { return s.fingerprint }

// Close stops the gpg agent and deletes the temporary GNUPGHOME.
func (s *Signer) Close() {
	kill := exec.Command("gpgconf", "--kill", "gpg-agent")
	kill.Env = append(os.Environ(), "GNUPGHOME="+s.home)
	_ = kill.Run()
	_ = os.RemoveAll(s.home)
}

// AlsoTrust adds the public key(s) in keyFile to what PublicKey exports,
// so the published keyring holds them beside the release key: the next key
// before a rotation, or the previous one for a release after it.
func (s *Signer) AlsoTrust(ctx context.Context, keyFile string) error {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("read key to also trust: %w", err)
	}
	before, err := s.publicFingerprints(ctx)
	if err != nil {
		return err
	}
	if _, err := s.gpg(ctx, key, "--import-options", "import-minimal", "--import"); err != nil {
		return fmt.Errorf("import %s: %w", keyFile, err)
	}
	after, err := s.publicFingerprints(ctx)
	if err != nil {
		return err
	}
	added := 0
	for _, f := range after {
		if !slices.Contains(before, f) {
			s.alsoTrusted = append(s.alsoTrusted, f)
			added++
		}
	}
	if added == 0 {
		return fmt.Errorf("%s holds no public key that is not already published", keyFile)
	}
	return nil
}

// publicFingerprints lists the primary fingerprints of every public key in
// the private home.
func (s *Signer) publicFingerprints(ctx context.Context) ([]string, error) {
	return s.fingerprints(ctx, "--list-keys", "pub")
}

// fingerprints lists the primary keys' fingerprints from gpg's colon
// listing (list is --list-keys or --list-secret-keys, record pub or sec):
// the "fpr" record right after each primary key's record.
func (s *Signer) fingerprints(ctx context.Context, list, record string) ([]string, error) {
	out, err := s.gpg(ctx, nil, "--with-colons", list)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var fprs []string
	prev := ""
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		if f[0] == "fpr" && prev == record && len(f) > 9 {
			fprs = append(fprs, f[9])
		}
		prev = f[0]
	}
	return fprs, nil
}

// PublicKey exports the public key (and any AlsoTrust added): binary (an
// apt keyring for Signed-By) or armored (rpm's gpgkey=, and for people).
func (s *Signer) PublicKey(ctx context.Context, armor bool) ([]byte, error) {
	args := append([]string{"--export-options", "export-minimal", "--export", s.fingerprint}, s.alsoTrusted...)
	if armor {
		args = append([]string{"--armor"}, args...)
	}
	out, err := s.gpg(ctx, nil, args...)
	if err != nil {
		return nil, fmt.Errorf("export public key: %w", err)
	}
	return out, nil
}

// ClearSign writes in, clear-signed, to out (apt's InRelease).
func (s *Signer) ClearSign(ctx context.Context, in, out string) error {
	_, err := s.gpg(ctx, nil, s.signArgs("--clearsign", "--output", out, in)...)
	if err != nil {
		return fmt.Errorf("clear-sign %s: %w", filepath.Base(in), err)
	}
	return nil
}

// DetachSign writes an armored detached signature of in to out (apt's
// Release.gpg, dnf's repomd.xml.asc).
func (s *Signer) DetachSign(ctx context.Context, in, out string) error {
	_, err := s.gpg(ctx, nil, s.signArgs("--armor", "--detach-sign", "--output", out, in)...)
	if err != nil {
		return fmt.Errorf("sign %s: %w", filepath.Base(in), err)
	}
	return nil
}

// SignRPMs adds the release key's signature to each rpm in place, with
// rpm's own rpmsign (which calls this Signer's gpg).
func (s *Signer) SignRPMs(ctx context.Context, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	gpgPath, err := exec.LookPath("gpg")
	if err != nil {
		return fmt.Errorf("sign rpms: %w", err)
	}
	extra := "--batch --no-tty --pinentry-mode loopback"
	if s.passFile != "" {
		extra += " --passphrase-file " + s.passFile
	}
	args := []string{
		// Debian's rpm names gpg2; gpg is the same program.
		"--define", "__gpg " + gpgPath,
		"--define", "_gpg_name " + s.fingerprint,
		"--define", "_gpg_sign_cmd_extra_args " + extra,
		"--addsign",
	}
	cmd := exec.CommandContext(ctx, "rpmsign", append(args, paths...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+s.home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rpmsign: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// signArgs are gpg's arguments for a signature by the release key.
func (s *Signer) signArgs(args ...string) []string {
	base := []string{"--local-user", s.fingerprint, "--digest-algo", "SHA512", "--pinentry-mode", "loopback"}
	if s.passFile != "" {
		base = append(base, "--passphrase-file", s.passFile)
	}
	return append(base, args...)
}

// gpg runs gpg in the private home with stdin and returns stdout.
func (s *Signer) gpg(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "gpg", append([]string{"--batch", "--no-tty", "--yes", "--quiet"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+s.home, "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gpg %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
