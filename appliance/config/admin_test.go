package config

import (
	"path/filepath"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

func TestAdminConfig(t *testing.T) {
	c := mustParse(t, "")
	if !c.Admin.Enabled() || c.Admin.Listen != DefaultAdminListen || c.Admin.MetricsAuth != MetricsAuthToken {
		t.Errorf("defaults: %+v", c.Admin)
	}
	if got, want := c.AdminPasswordPath(), filepath.Join(DefaultStateDir, statedir.AdminPasswordFile); got != want {
		t.Errorf("password path %q, want %q", got, want)
	}
	c = mustParse(t, "admin:\n  listen: 0.0.0.0:5053\n  allowed_networks: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n  token_sha256: ["+
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA]\n")
	nets, err := c.Admin.AdminNetworks()
	if err != nil || len(nets) != 3 || nets[1].Bits() != 32 {
		t.Errorf("networks %v, %v", nets, err)
	}
	if c.Admin.TokenSHA256[0][0] != 'a' {
		t.Error("token digests are not lower-cased")
	}
	c = mustParse(t, "", "DUO_CONFIDENTIAL_ADMIN_LISTEN=", "DUO_CONFIDENTIAL_ADMIN_ALLOWED_NETWORKS=127.0.0.1/32,::1")
	if len(c.Admin.AllowedNetworks) != 2 {
		t.Errorf("environment: %+v", c.Admin)
	}
	if c = mustParse(t, "admin:\n  listen: \"\"\n"); c.Admin.Enabled() {
		t.Error("an empty listen keeps the admin listener on")
	}
}

func TestAdminConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"listen", "admin:\n  listen: nowhere\n", []string{"admin.listen", "HOST:PORT"}},
		{"open listen without networks", "admin:\n  listen: 0.0.0.0:5053\n", []string{"admin.listen", "allowed_networks"}},
		{"bad network", "admin:\n  allowed_networks: [10.0.0.0/33]\n", []string{"admin.allowed_networks[0]", "CIDR"}},
		{"bad token digest", "admin:\n  token_sha256: [abc]\n", []string{"admin.token_sha256[0]", "SHA-256"}},
		{"metrics auth", "admin:\n  metrics_auth: open\n", []string{"admin.metrics_auth", "must be one of"}},
		{"session timeout", "admin:\n  session_timeout: 10s\n", []string{"admin.session_timeout"}},
		{"relative password file", "admin:\n  password_file: pw\n", []string{"admin.password_file", "absolute"}},
		{"unknown key", "admin:\n  passwd: x\n", []string{"passwd"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStr(tc.yaml)
			wantErr(t, err, tc.want...)
		})
	}
}
