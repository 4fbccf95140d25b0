package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/duo-confidential/duo-confidential/internal/bearer"
)

// ProxyCmd groups proxy helpers.
type ProxyCmd struct {
	Token ProxyTokenCmd `cmd:"" help:"Make a new inbound bearer token and the digest to put in proxy.inbound_token_sha256."`
}

// ProxyTokenCmd prints a fresh random token and its SHA-256 digest.
type ProxyTokenCmd struct{}

// Run prints the token once: only its digest belongs in the configuration.
func (c *ProxyTokenCmd) Run(g *Globals) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok := "dc_" + base64.RawURLEncoding.EncodeToString(b[:])
	fmt.Fprintf(g.stdout(), "token:  %s\nsha256: %s\n\nGive the token to clients (Authorization: Bearer <token>) and add the digest to\nproxy.inbound_token_sha256 in the configuration. The token is not stored anywhere.\n", tok, bearer.Digest(tok))
	return nil
}
