package main

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// TLSCmd groups the certificate commands.
type TLSCmd struct {
	CACert TLSCACertCmd `cmd:"" name:"ca-cert" help:"Print the local CA's certificate (PEM), for GitLab's and IDEs' trust stores. Creates the CA on first use."`
}

// TLSCACertCmd exports the local CA certificate clients must trust.
type TLSCACertCmd struct {
	Out string `help:"Write the certificate to this file (mode 0644) instead of stdout." placeholder:"FILE"`
}

// Run opens (or creates) the local CA in the state directory, the same one
// `serve` uses, and prints its certificate and fingerprint.
func (c *TLSCACertCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return err
	}
	if cfg.TLS.Source != apptls.SourceLocalCA {
		return fmt.Errorf("tls.source is %q: the listeners do not use the local CA, so there is no CA certificate to export (set tls.source: local-ca to use it)", cfg.TLS.Source)
	}
	ca, err := apptls.OpenLocalCA(filepath.Join(cfg.StateDir, statedir.LocalCADir), apptls.LocalCAOptions{LeafLifetime: cfg.TLS.LocalCA.LeafLifetime})
	if err != nil {
		return err
	}
	pem := ca.CertificatePEM()
	root := ca.Certificate()
	sum := sha256.Sum256(root.Raw)
	fp := strings.ToUpper(fmt.Sprintf("% x", sum[:]))
	fp = strings.ReplaceAll(fp, " ", ":")
	if c.Out != "" {
		if err := statedir.WriteFile(c.Out, pem, statedir.PublicMode); err != nil {
			return fmt.Errorf("write %s: %w", c.Out, err)
		}
	} else if _, err := g.stdout().Write(pem); err != nil {
		return err
	}
	fmt.Fprintf(g.Stderr, "local CA %q, valid until %s\nSHA-256 fingerprint %s\n(compare it with the one the status page shows before you trust the file)\n",
		root.Subject.CommonName, root.NotAfter.UTC().Format("2006-01-02"), fp)
	return nil
}
