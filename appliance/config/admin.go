package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// Defaults of the admin section.
const (
	DefaultAdminListen         = "127.0.0.1:5053"
	DefaultAdminMetricsAuth    = MetricsAuthToken
	DefaultAdminSessionTimeout = 30 * time.Minute
)

// Values of admin.metrics_auth.
const (
	MetricsAuthToken = "token" // /metrics needs an admin token (or a signed-in session)
	MetricsAuthNone  = "none"  // /metrics is open to the allowed networks
)

// AdminConfig is the admin web UI, status API and metrics listener: where it
// listens, where the admin password hash lives, the digests of admin API
// tokens, which networks may connect, how /metrics is protected, and how
// long an idle session lasts. An empty Listen turns the listener off.
type AdminConfig struct {
	Listen          string        `yaml:"listen"`
	PasswordFile    string        `yaml:"password_file"`
	TokenSHA256     []string      `yaml:"token_sha256"`
	AllowedNetworks []string      `yaml:"allowed_networks"`
	MetricsAuth     string        `yaml:"metrics_auth"`
	SessionTimeout  time.Duration `yaml:"session_timeout"`
}

// Enabled reports whether the admin listener runs.
func (a AdminConfig) Enabled() bool { return a.Listen != "" }

// AdminPasswordPath is the file holding the admin password hash: the
// configured one, else statedir.AdminPasswordFile inside the state directory.
func (c *Config) AdminPasswordPath() string {
	if p := c.Admin.PasswordFile; p != "" {
		return p
	}
	return filepath.Join(c.StateDir, statedir.AdminPasswordFile)
}

// AdminNetworks parses admin.allowed_networks (validated: never fails for
// a Config that passed Validate). A bare address is a single-host prefix.
func (a AdminConfig) AdminNetworks() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(a.AllowedNetworks))
	for _, s := range a.AllowedNetworks {
		p, err := parseNetwork(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR (10.0.0.0/8) nor an address", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s)
	}
	return p.Masked(), nil
}

// normalizeAdmin lower-cases the token digests.
func (c *Config) normalizeAdmin() {
	for i, s := range c.Admin.TokenSHA256 {
		c.Admin.TokenSHA256[i] = strings.ToLower(strings.TrimSpace(s))
	}
}

func (v *validator) admin() {
	a := v.c.Admin
	if a.PasswordFile != "" {
		v.absPath("admin.password_file", a.PasswordFile)
	}
	v.sha256List("admin.token_sha256", a.TokenSHA256)
	for i, s := range a.AllowedNetworks {
		if _, err := parseNetwork(s); err != nil {
			v.fail(fmt.Sprintf("admin.allowed_networks[%d]", i), "%v", err)
		}
	}
	v.oneOf("admin.metrics_auth", a.MetricsAuth, []string{MetricsAuthToken, MetricsAuthNone})
	v.durationIn("admin.session_timeout", a.SessionTimeout, time.Minute, 24*time.Hour)
	if a.Listen == "" {
		return
	}
	host, port, err := net.SplitHostPort(a.Listen)
	switch {
	case err != nil || port == "":
		v.fail("admin.listen", "%q is not HOST:PORT (e.g. %s); leave it empty to turn the admin UI off", a.Listen, DefaultAdminListen)
	case !isLoopback(host) && len(a.AllowedNetworks) == 0:
		v.fail("admin.listen", "%q is reachable from other machines, so admin.allowed_networks must list the networks admins connect from (e.g. [10.1.2.0/24]); write 0.0.0.0/0 and ::/0 to allow every network deliberately", a.Listen)
	}
	if a.MetricsAuth == MetricsAuthNone && err == nil && !isLoopback(host) && len(a.AllowedNetworks) == 0 {
		v.fail("admin.metrics_auth", "\"none\" opens /metrics without a token; allow it only together with admin.allowed_networks")
	}
}
