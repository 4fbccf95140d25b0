package attest

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// ParseTestRoots reads replacement vendor roots from PEM: an ECDSA
// certificate named "… SGX Root CA" becomes the TDX root, RSA certificates
// named "ARK-<product>" and "SEV-<product>" (or "SEV-VLEK-<product>") become
// that product line's AMD chain. It exists for sandbox evidence only: the
// caller must make the choice explicit and visible, never configurable.
func ParseTestRoots(pemBytes []byte) (*Roots, error) {
	r := &Roots{SNP: map[string]AMDChain{}}
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse test root: %w", err)
		}
		cn := c.Subject.CommonName
		switch pub := c.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if !strings.Contains(cn, "SGX Root CA") {
				return nil, fmt.Errorf("ECDSA certificate %q is not an SGX root", cn)
			}
			if r.TDX == nil {
				r.TDX = x509.NewCertPool()
			}
			r.TDX.AddCert(c)
		case *rsa.PublicKey:
			_ = pub
			product, role, err := amdRole(cn)
			if err != nil {
				return nil, err
			}
			ch := r.SNP[product]
			if role == "ARK" {
				ch.ARK = c
			} else {
				ch.ASK = c
			}
			r.SNP[product] = ch
		default:
			return nil, fmt.Errorf("certificate %q has an unsupported key type", cn)
		}
	}
	for p, ch := range r.SNP {
		if ch.ARK == nil || ch.ASK == nil {
			return nil, fmt.Errorf("AMD test chain for %s needs both ARK and ASK", p)
		}
	}
	if r.TDX == nil && len(r.SNP) == 0 {
		return nil, fmt.Errorf("no test roots found in PEM")
	}
	return r, nil
}

func amdRole(cn string) (product, role string, err error) {
	switch {
	case strings.HasPrefix(cn, "ARK-"):
		return strings.TrimPrefix(cn, "ARK-"), "ARK", nil
	case strings.HasPrefix(cn, "SEV-VLEK-"):
		return strings.TrimPrefix(cn, "SEV-VLEK-"), "ASK", nil
	case strings.HasPrefix(cn, "SEV-"):
		return strings.TrimPrefix(cn, "SEV-"), "ASK", nil
	}
	return "", "", fmt.Errorf("RSA certificate %q is neither an AMD ARK nor an ASK", cn)
}
