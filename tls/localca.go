package tls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// DefaultLeafLifetime is the validity of a leaf when LocalCAOptions.LeafLifetime is zero;
// certmagic renews at a third of the lifetime left, so a leaf is replaced every ~5 days.
const DefaultLeafLifetime = 7 * 24 * time.Hour

// LocalCAIssuerKey is what (*LocalCA).IssuerKey returns: certmagic's storage folder for its leaves.
const LocalCAIssuerKey = "duo-confidential-local-ca"

const (
	defaultLocalCAName = "duo-confidential local CA"
	rootLifetime       = 10 * 365 * 24 * time.Hour
	minLeafLifetime    = time.Hour
	// clockSkew backdates NotBefore so clients whose clock is a little behind accept a fresh cert.
	clockSkew    = 5 * time.Minute
	maxLeafNames = 100
)

// LocalCAOptions tunes the local CA.
type LocalCAOptions struct {
	LeafLifetime time.Duration    // default DefaultLeafLifetime; must be >= 1h and < the root lifetime (10 years)
	Now          func() time.Time // clock for NotBefore/NotAfter and expiry checks (tests inject); nil = time.Now
	Name         string           // CA common-name prefix; default "duo-confidential local CA"
}

// LocalCA is a certmagic.Issuer signing server leaves with a root kept on disk,
// for sites without any reachable ACME CA. It is safe for concurrent use.
//
// The root carries no NameConstraints on purpose: the operator's hostnames and
// addresses are not known when the root is minted and may change later, and a
// constrained root would have to be re-distributed to every client on each change.
// Its exposure is limited instead by the 0600 key in a 0700 directory and by
// Issue signing only server-auth leaves for validated hostnames and IPs.
type LocalCA struct {
	key      crypto.Signer
	root     *x509.Certificate
	rootPEM  []byte
	lifetime time.Duration
	now      func() time.Time
	certPath string
}

// OpenLocalCA loads the CA kept in dir, creating it on first use: dir 0700,
// ca.key (PKCS#8 PEM, ECDSA P-256, 0600), ca.crt (PEM, 0644), root valid 10 years.
// Creation is safe against crashes and against concurrent callers, in this or
// other processes: each file is written in full to a temporary name and then
// hard-linked into place, which fails if the name exists, so the first writer
// wins and the others load its files. A ca.key left without ca.crt (a crash
// between the two links) gets a fresh root self-signed with that key.
// It refuses a ca.key readable or writable by group/other, a key not matching
// ca.crt, a ca.crt without ca.key, and an expired or non-CA root.
func OpenLocalCA(dir string, o LocalCAOptions) (*LocalCA, error) {
	ca := &LocalCA{lifetime: o.LeafLifetime, now: o.Now, certPath: filepath.Join(dir, statedir.LocalCACertFile)}
	if ca.lifetime == 0 {
		ca.lifetime = DefaultLeafLifetime
	}
	if ca.lifetime < minLeafLifetime || ca.lifetime >= rootLifetime {
		return nil, fmt.Errorf("local CA: leaf lifetime %v outside [%v, %v)", ca.lifetime, minLeafLifetime, rootLifetime)
	}
	if ca.now == nil {
		ca.now = time.Now
	}
	name := o.Name
	if name == "" {
		name = defaultLocalCAName
	}
	if err := statedir.EnsureDir(dir); err != nil {
		return nil, err
	}
	keyPath, certPath := filepath.Join(dir, statedir.LocalCAKeyFile), filepath.Join(dir, statedir.LocalCACertFile)

	// The cert is published only after the key, so looking at it first means a
	// concurrent creator finishing between the two looks cannot make a cert
	// seem to lack its key.
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	if certExists && !keyExists {
		return nil, fmt.Errorf("local CA: %s exists without %s; restore the key or remove %s to mint a new CA", certPath, keyPath, certPath)
	}
	if !keyExists {
		if err := createCAKey(dir, keyPath); err != nil {
			return nil, err
		}
	}
	if !certExists {
		key, err := loadCAKey(keyPath)
		if err != nil {
			return nil, err
		}
		if err := createRoot(dir, certPath, key, name, ca.now()); err != nil {
			return nil, err
		}
	}

	if ca.key, err = loadCAKey(keyPath); err != nil {
		return nil, err
	}
	if ca.root, ca.rootPEM, err = loadRoot(certPath); err != nil {
		return nil, err
	}
	if pub, ok := ca.key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.root.PublicKey) {
		return nil, fmt.Errorf("local CA: %s does not match the public key of %s", keyPath, certPath)
	}
	if now := ca.now(); now.After(ca.root.NotAfter) {
		return nil, fmt.Errorf("local CA: root %s expired on %s; remove %s and %s to mint a new CA (clients must then trust the new root)",
			certPath, ca.root.NotAfter.UTC().Format(time.RFC3339), keyPath, certPath)
	}
	return ca, nil
}

// IssuerKey returns LocalCAIssuerKey, the folder certmagic stores this CA's leaves under.
func (ca *LocalCA) IssuerKey() string { return LocalCAIssuerKey }

// Certificate returns the root certificate; callers must not modify it.
func (ca *LocalCA) Certificate() *x509.Certificate { return ca.root }

// CertificateFile is the path of the root certificate's PEM file, for
// clients on this machine (curl --cacert).
func (ca *LocalCA) CertificateFile() string { return ca.certPath }

// CertificatePEM returns a copy of the root certificate in PEM, for clients to trust.
func (ca *LocalCA) CertificatePEM() []byte { return append([]byte(nil), ca.rootPEM...) }

// Issue signs a server-auth leaf for the CSR's DNS names and IP addresses.
// The CSR's subject and extensions are ignored; it is refused if its signature
// is bad, if it has no names, more than 100, an invalid hostname, an
// unspecified IP, or any URI or email SAN.
//
// The result holds the leaf only, not the root: certmagic stores the PEM
// bundle as given and serves every certificate in it, and clients of this CA
// trust the root directly, so sending it on each handshake would be dead weight.
func (ca *LocalCA) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local CA issue: %w", err)
	}
	if csr == nil {
		return nil, errors.New("local CA issue: nil CSR")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("local CA issue: CSR signature: %w", err)
	}
	dnsNames, ips, err := leafNames(csr)
	if err != nil {
		return nil, fmt.Errorf("local CA issue: %w", err)
	}

	now := ca.now()
	notBefore, notAfter := now.Add(-clockSkew), now.Add(ca.lifetime)
	if notBefore.Before(ca.root.NotBefore) {
		notBefore = ca.root.NotBefore
	}
	if notAfter.After(ca.root.NotAfter) {
		notAfter = ca.root.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("local CA issue: root expired on %s", ca.root.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("local CA issue: %w", err)
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment // RSA key exchange in TLS 1.0-1.2 encrypts to the leaf key
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		// AuthorityKeyId is filled by x509 from the root's SubjectKeyId.
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local CA issue: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("local CA issue: sign leaf: %w", err)
	}
	return &certmagic.IssuedCertificate{Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// leafNames validates the CSR's SANs and returns them deduplicated, in order.
func leafNames(csr *x509.CertificateRequest) ([]string, []net.IP, error) {
	if len(csr.URIs) > 0 {
		return nil, nil, errors.New("CSR has URI SANs; only DNS names and IPs are issued")
	}
	if len(csr.EmailAddresses) > 0 {
		return nil, nil, errors.New("CSR has email SANs; only DNS names and IPs are issued")
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) == 0 {
		return nil, nil, errors.New("CSR has no DNS names or IP addresses")
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) > maxLeafNames {
		return nil, nil, fmt.Errorf("CSR has more than %d names", maxLeafNames)
	}
	seen := make(map[string]bool)
	var dnsNames []string
	for _, n := range csr.DNSNames {
		if err := checkHostname(n); err != nil {
			return nil, nil, err
		}
		if k := strings.ToLower(n); !seen[k] {
			seen[k] = true
			dnsNames = append(dnsNames, n)
		}
	}
	var ips []net.IP
	for _, ip := range csr.IPAddresses {
		if ip.IsUnspecified() {
			return nil, nil, fmt.Errorf("IP SAN %s is unspecified", ip)
		}
		if k := ip.String(); !seen[k] {
			seen[k] = true
			ips = append(ips, ip)
		}
	}
	return dnsNames, ips, nil
}

// checkHostname accepts LDH names (RFC 1123 labels), single-label names for
// internal hosts, and a "*" as the whole leftmost label followed by at least
// two labels, so no wildcard covers a whole top-level domain.
func checkHostname(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("DNS SAN %q: length must be 1..253", name)
	}
	if net.ParseIP(name) != nil {
		return fmt.Errorf("DNS SAN %q is an IP address; it belongs in the IP SANs", name)
	}
	labels := strings.Split(name, ".")
	if labels[0] == "*" {
		if len(labels) < 3 {
			return fmt.Errorf("DNS SAN %q: a wildcard needs at least two labels after it", name)
		}
		labels = labels[1:]
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("DNS SAN %q: labels must be 1..63 characters", name)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("DNS SAN %q: a label may not start or end with '-'", name)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("DNS SAN %q: invalid character %q (only letters, digits, '-' and a leading \"*.\")", name, c)
			}
		}
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("local CA: %w", err)
	}
}

func createCAKey(dir, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("local CA: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("local CA: encode key: %w", err)
	}
	return publishFile(dir, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func createRoot(dir, certPath string, key crypto.Signer, name string, now time.Time) error {
	serial, err := randomSerial()
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("local CA: root id: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name + " " + hex.EncodeToString(id)},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // leaves only: no intermediate may chain under this root
		// SubjectKeyId is derived from the public key by x509 for CA templates.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("local CA: sign root: %w", err)
	}
	return publishFile(dir, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// publishFile makes data appear at path complete or not at all, and never
// replaces an existing file: it is written and synced under a temporary name,
// then hard-linked to path. If path already exists another writer won, which
// is not an error: the caller loads what is there.
func publishFile(dir, path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("local CA: create temp for %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("local CA: write temp for %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("local CA: publish %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil { // persist the new directory entry
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// loadCAKey reads the PKCS#8 key, refusing it if group or other may access it.
// Errors name the file but never include its content.
func loadCAKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("local CA: open key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("local CA: stat key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("local CA: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("local CA: %s has mode %04o, open to group/other; fix with: chmod 600 %s", path, perm, path)
	}
	data, err := readAll(f, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("local CA: read %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("local CA: %s holds no PEM \"PRIVATE KEY\" (PKCS#8) block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: malformed PKCS#8 key", path)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("local CA: %s: key type %T cannot sign", path, k)
	}
	return signer, nil
}

// loadRoot reads and checks the root: a self-signed CA allowed to sign certificates.
func loadRoot(path string) (*x509.Certificate, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("local CA: open certificate: %w", err)
	}
	defer f.Close()
	data, err := readAll(f, 64<<10)
	if err != nil {
		return nil, nil, fmt.Errorf("local CA: read %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("local CA: %s holds no PEM CERTIFICATE block; remove %s and %s to mint a new CA",
			path, path, filepath.Join(filepath.Dir(path), statedir.LocalCAKeyFile))
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("local CA: parse %s: %w", path, err)
	}
	if !root.IsCA || !root.BasicConstraintsValid || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("local CA: %s is not a CA certificate allowed to sign certificates", path)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, nil, fmt.Errorf("local CA: %s is not a valid self-signed root: %w", path, err)
	}
	return root, pem.EncodeToMemory(block), nil
}

// readAll reads at most limit bytes, failing on more: CA files are small and
// an oversized one is not ours.
func readAll(f *os.File, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}
