package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/duo-confidential/duo-confidential/internal/bearer"
	"github.com/duo-confidential/duo-confidential/ui"
)

// AdminCmd groups the admin UI's credentials.
type AdminCmd struct {
	SetPassword AdminSetPasswordCmd `cmd:"" name:"set-password" help:"Set the admin UI password (read from the terminal, or the first line of stdin); its bcrypt hash goes to admin.password_file."`
	Token       AdminTokenCmd       `cmd:"" help:"Make a new admin API token and the digest to put in admin.token_sha256."`
}

// AdminSetPasswordCmd stores the hash of a new admin password.
type AdminSetPasswordCmd struct {
	in io.Reader // nil: os.Stdin (tests set it)
}

// Run reads the password (twice on a terminal, without echo) and writes
// its hash, mode 0600. The password itself is never stored or printed.
func (c *AdminSetPasswordCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return fmt.Errorf("admin set-password: %w", err)
	}
	pw, err := c.readPassword(g)
	if err != nil {
		return fmt.Errorf("admin set-password: %w", err)
	}
	defer clear(pw)
	path := cfg.AdminPasswordPath()
	if err := ui.WritePasswordFile(path, pw, 0); err != nil {
		return fmt.Errorf("admin set-password: %w", err)
	}
	fmt.Fprintf(g.stdout(), "admin password set (bcrypt hash in %s); it applies to the next sign-in\n", path)
	return nil
}

func (c *AdminSetPasswordCmd) readPassword(g *Globals) ([]byte, error) {
	if c.in == nil {
		if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
			fmt.Fprintf(g.Stderr, "New admin password (%d to %d characters): ", ui.MinPasswordLen, ui.MaxPasswordLen)
			a, err := term.ReadPassword(fd)
			fmt.Fprintln(g.Stderr)
			if err != nil {
				return nil, fmt.Errorf("read password: %w", err)
			}
			fmt.Fprint(g.Stderr, "Repeat it: ")
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(g.Stderr)
			if err != nil {
				return nil, fmt.Errorf("read password: %w", err)
			}
			if !bytes.Equal(a, b) {
				return nil, errors.New("the two passwords differ; nothing was changed")
			}
			return a, nil
		}
		c.in = os.Stdin
	}
	line, err := bufio.NewReader(io.LimitReader(c.in, 4096)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read password from stdin: %w", err)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// AdminTokenCmd prints a fresh admin API token and its digest.
type AdminTokenCmd struct{}

// Run prints the token once: only its digest belongs in the configuration.
func (c *AdminTokenCmd) Run(g *Globals) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok := "dca_" + base64.RawURLEncoding.EncodeToString(b[:])
	fmt.Fprintf(g.stdout(), "token:  %s\nsha256: %s\n\nUse the token as 'Authorization: Bearer <token>' for /api/status and /metrics (e.g. in Prometheus'\nauthorization.credentials), or to sign in. Add the digest to admin.token_sha256. The token is not stored anywhere.\n", tok, bearer.Digest(tok))
	return nil
}
