package tls

import (
	"bytes"
	"context"
	"crypto/sha256"
	stdtls "crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// maxPEMFile bounds a certificate or key file: a chain of a few
// certificates is a few KiB.
const maxPEMFile = 1 << 20

// fileSource serves the operator's certificate files and swaps in new
// contents atomically: certmagic's cache gets the new certificate before
// the old one leaves it, so no handshake finds neither.
type fileSource struct {
	m                 *Manager
	certPath, keyPath string

	mu       sync.Mutex // serialises load
	sum      [32]byte   // of the files' contents now served
	hash     string     // certmagic's cache key of the served certificate
	leaf     *x509.Certificate
	loadedAt time.Time
	err      string // the last load's error, "" after a good load
	errAt    time.Time
	warned   [32]byte // sum of the certificate last warned about expiring
}

// load reads and checks the files and serves them; on any problem the
// current certificate stays and the error is returned (and kept for
// Status).
func (f *fileSource) load(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.loadLocked(ctx)
	if err != nil {
		f.err, f.errAt = err.Error(), f.m.now()
		return err
	}
	f.err, f.errAt = "", time.Time{}
	return nil
}

func (f *fileSource) loadLocked(ctx context.Context) error {
	certPEM, err := readPEMFile(f.certPath)
	if err != nil {
		return err
	}
	keyPEM, err := readPEMFile(f.keyPath)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(append(append([]byte(nil), certPEM...), keyPEM...))
	if f.hash != "" && sum == f.sum {
		return nil // unchanged
	}
	leaf, err := checkPair(certPEM, keyPEM, f.certPath, f.keyPath, f.m.o.Names, f.m.now())
	if err != nil {
		return err
	}
	hash, err := f.m.cfg.CacheUnmanagedCertificatePEMBytes(ctx, certPEM, keyPEM, []string{"operator"})
	if err != nil {
		return fmt.Errorf("load %s: %w", f.certPath, err)
	}
	if f.hash != "" && f.hash != hash {
		f.m.cache.Remove([]string{f.hash})
	}
	reloaded := f.hash != ""
	f.sum, f.hash, f.leaf, f.loadedAt = sum, hash, leaf, f.m.now()
	f.m.log.Info("operator certificate loaded", "file", f.certPath, "reload", reloaded,
		"names", certNames(leaf), "issuer", leaf.Issuer.CommonName, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	f.warnExpiry()
	return nil
}

// warnExpiry logs, once per certificate, that it expires within the
// warning window; Status repeats it for as long as it holds.
func (f *fileSource) warnExpiry() {
	if f.leaf == nil || f.warned == f.sum {
		return
	}
	if left := f.leaf.NotAfter.Sub(f.m.now()); left < f.m.o.ExpiryWarning {
		f.warned = f.sum
		f.m.log.Warn("operator certificate expires soon: replace the files and send SIGHUP (systemctl reload duo-confidential)",
			"file", f.certPath, "not_after", f.leaf.NotAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
	}
}

// watch reloads the files when their contents change, until ctx ends.
// Polling (not inotify) also sees the symlink swaps of Kubernetes secrets
// and files replaced on network mounts.
func (f *fileSource) watch(ctx context.Context) {
	every := f.m.o.Files.PollInterval
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := f.load(ctx); err != nil {
			if err.Error() != lastErr {
				f.m.log.Error("operator certificate files changed but cannot be used; still serving the previous certificate", "err", err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		f.mu.Lock()
		f.warnExpiry()
		f.mu.Unlock()
	}
}

// readPEMFile reads a bounded PEM file.
func readPEMFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a PEM certificate or key", path, maxPEMFile)
	}
	if !bytes.Contains(b, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("%s holds no PEM block (\"-----BEGIN ...\")", path)
	}
	return b, nil
}

// checkPair refuses what would fail at handshakes later: a key that is not
// the certificate's, a certificate outside its validity period, one that
// does not cover every configured name.
func checkPair(certPEM, keyPEM []byte, certPath, keyPath string, names []string, now time.Time) (*x509.Certificate, error) {
	pair, err := stdtls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("the private key in %s does not belong to the certificate in %s (first certificate in the file): use the key the certificate was issued for", keyPath, certPath)
		}
		return nil, fmt.Errorf("certificate %s with key %s: %w", certPath, keyPath, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse %s: %w", certPath, err)
		}
	}
	switch {
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("the certificate in %s is not valid before %s (check this machine's clock, or the certificate's dates)", certPath, leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("the certificate in %s expired on %s: install a renewed one", certPath, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var missing []string
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the certificate in %s does not cover %s (it covers %s): issue one whose subject alternative names include every name in tls.names",
			certPath, strings.Join(missing, ", "), strings.Join(certNames(leaf), ", "))
	}
	if len(certNames(leaf)) == 0 {
		return nil, errors.New("the certificate in " + certPath + " has no subject alternative names; clients ignore the common name, so it covers nothing")
	}
	return leaf, nil
}

// certNames lists a certificate's DNS and IP subject alternative names.
func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// fileNames reads the names a certificate file's leaf covers.
func fileNames(path string) ([]string, error) {
	b, err := readPEMFile(path)
	if err != nil {
		return nil, err
	}
	return chainNames(b, path)
}

// chainNames returns the names of the first certificate in a PEM chain.
func chainNames(b []byte, path string) ([]string, error) {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, fmt.Errorf("%s holds no CERTIFICATE block", path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		if len(certNames(leaf)) == 0 {
			return nil, fmt.Errorf("the certificate in %s has no subject alternative names; clients ignore the common name, so it covers nothing", path)
		}
		return certNames(leaf), nil
	}
}

// CheckFiles checks an operator certificate and key pair the way the
// Manager will load it: readable PEM, matching key, inside its validity
// period at now, covering every name.
func CheckFiles(certPath, keyPath string, names []string, now time.Time) error {
	certPEM, err := readPEMFile(certPath)
	if err != nil {
		return err
	}
	keyPEM, err := readPEMFile(keyPath)
	if err != nil {
		return err
	}
	_, err = checkPair(certPEM, keyPEM, certPath, keyPath, names, now)
	return err
}
