//go:build !duo_production

package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/ui"
)

// defaultDemoAdmin is where the demo's admin UI listens unless --check
// (which takes a free port so it can run beside a running demo).
const defaultDemoAdmin = "127.0.0.1:5053"

// demoAdmin prepares the demo's admin UI: a generated password, hashed
// into the demo's state directory, and the admin listener.
func (c *DemoCmd) demoAdmin(cfg *config.Config) (net.Listener, string, error) {
	addr := c.AdminListen
	if addr == "" {
		addr = defaultDemoAdmin
		if c.Check {
			addr = "127.0.0.1:0"
		}
	}
	cfg.Admin.Listen = addr
	pw, err := demoPassword()
	if err != nil {
		return nil, "", err
	}
	// The lowest bcrypt cost: this password lives as long as the demo.
	if err := ui.WritePasswordFile(cfg.AdminPasswordPath(), []byte(pw), 4); err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w (choose another address with --admin-listen)", addr, err)
	}
	return ln, pw, nil
}

// demoPassword makes a readable random password (about 95 bits).
func demoPassword() (string, error) {
	const alphabet = "abcdefghijkmnopqrstuvwxyz23456789"
	var b strings.Builder
	for i := range 19 {
		if i > 0 && i%5 == 4 {
			b.WriteByte('-')
			continue
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", fmt.Errorf("demo password: %w", err)
		}
		b.WriteByte(alphabet[n.Int64()])
	}
	return b.String(), nil
}

// printDemoAdmin prints where the admin UI is and its one-time password.
func printDemoAdmin(out io.Writer, base, password string) {
	fmt.Fprintf(out, `
The admin UI (attestation, GitLab setup, keys, TLS, live traffic) is at
  %s/admin/
  DEMO admin password (printed once, valid while this demo runs): %s
  Status API %s/api/status and Prometheus %s/metrics: sign in first, or use an
  admin token (duo-confidential admin token) as 'Authorization: Bearer <token>'.
`, base, password, base, base)
}

var demoCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// checkDemoAdmin signs in to the admin UI and reads /api/status, as
// --check's proof that the UI shows the running appliance.
func checkDemoAdmin(out io.Writer, client *http.Client, base, password string) error {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: client.Transport}
	get := func(path string) (int, string, error) {
		resp, err := hc.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b), err
	}
	_, page, err := get("/login")
	if err != nil {
		return fmt.Errorf("admin UI: %w", err)
	}
	m := demoCSRF.FindStringSubmatch(page)
	if m == nil {
		return fmt.Errorf("admin UI: no sign-in form")
	}
	resp, err := hc.PostForm(base+"/login", url.Values{"csrf": {m[1]}, "password": {password}})
	if err != nil {
		return fmt.Errorf("admin UI sign-in: %w", err)
	}
	resp.Body.Close()
	code, body, err := get("/api/status")
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("admin UI /api/status: HTTP %d %v", code, err)
	}
	var st ui.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return fmt.Errorf("admin UI /api/status: %w", err)
	}
	if !st.Ready {
		return fmt.Errorf("admin UI says the appliance is not ready: %+v", st.Components)
	}
	fmt.Fprintf(out, "\nThe admin UI at %s/admin/ reports every part ready (%d components).\n", base, len(st.Components))
	return nil
}
