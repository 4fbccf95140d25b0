package config

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	apptls "github.com/duo-confidential/duo-confidential/tls"
)

func TestTLSConfig(t *testing.T) {
	c := mustParse(t, "")
	if c.TLS.Source != apptls.SourceLocalCA || c.TLS.LocalCA.LeafLifetime != 7*24*time.Hour {
		t.Errorf("defaults: %+v", c.TLS)
	}
	names := c.TLSNames()
	for _, want := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(names, want) {
			t.Errorf("default local-CA names %v lack %s", names, want)
		}
	}
	c = mustParse(t, "proxy:\n  listen: 10.1.2.3:8080\n  inbound_token_sha256: ["+hex64("a")+"]\ngateway:\n  listen: 0.0.0.0:5052\n")
	if n := c.TLSNames(); !slices.Contains(n, "10.1.2.3") || slices.Contains(n, "0.0.0.0") {
		t.Errorf("names %v: want the proxy's specific address, not the wildcard", n)
	}
	c = mustParse(t, "tls:\n  names: [duo.example.internal, 10.0.0.5]\n")
	if n := c.TLSNames(); !slices.Equal(n, []string{"duo.example.internal", "10.0.0.5"}) {
		t.Errorf("configured names replaced: %v", n)
	}
	dir := t.TempDir()
	mac := writeFile(t, dir, "eab.key", "c2VjcmV0LW1hYy1rZXk\n", 0o600)
	c = mustParse(t, "tls:\n  source: acme\n  names: [duo.example.com]\n  acme:\n    email: ops@example.com\n    agree_terms: true\n    eab_key_id: kid-1\n    eab_mac_key_file: "+mac+"\n",
		"DUO_CONFIDENTIAL_TLS_ACME_CHALLENGES=tls-alpn-01")
	o, err := c.TLSOptions(x509.NewCertPool())
	if err != nil {
		t.Fatal(err)
	}
	if o.ACME.EAB == nil || o.ACME.EAB.MACKey != "c2VjcmV0LW1hYy1rZXk" || o.ACME.Directory != DefaultACMEDirectory ||
		!slices.Equal(o.ACME.Challenges, []string{"tls-alpn-01"}) || o.ACME.Proxy == nil || o.ACME.Roots == nil {
		t.Errorf("ACME options: %+v", o.ACME)
	}
	if off := mustParse(t, "", "DUO_CONFIDENTIAL_TLS_SOURCE=off"); off.TLS.Source != apptls.SourceOff {
		t.Error("tls.source from the environment")
	}
}

func hex64(c string) string { return strings.Repeat(c, 64) }

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	open := writeFile(t, dir, "eab-open.key", "k", 0o644)
	junk := writeFile(t, dir, "junk.pem", "not a certificate", 0o644)
	acme := "tls:\n  source: acme\n  names: [duo.example.com]\n  acme:\n    email: ops@example.com\n    agree_terms: true\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown source", "tls:\n  source: self-signed\n", []string{"tls.source", "must be one of"}},
		{"bad name", "tls:\n  names: [\"duo confidential\"]\n", []string{"tls.names[0]", "invalid character"}},
		{"leaf lifetime", "tls:\n  local_ca:\n    leaf_lifetime: 10m\n", []string{"tls.local_ca.leaf_lifetime"}},
		{"poll interval", "tls:\n  files:\n    poll_interval: 1ms\n", []string{"tls.files.poll_interval"}},
		{"acme without names", "tls:\n  source: acme\n  acme:\n    email: ops@example.com\n    agree_terms: true\n", []string{"tls.names", "ACME needs"}},
		{"acme without email", "tls:\n  source: acme\n  names: [duo.example.com]\n  acme:\n    agree_terms: true\n", []string{"tls.acme.email"}},
		{"acme without agreement", "tls:\n  source: acme\n  names: [duo.example.com]\n  acme:\n    email: ops@example.com\n", []string{"tls.acme.agree_terms", "never asks"}},
		{"acme plain http directory", acme + "    directory: http://ca.example.com/dir\n", []string{"tls.acme.directory", "https"}},
		{"acme bad challenge", acme + "    challenges: [dns-01]\n", []string{"tls.acme.challenges[0]"}},
		{"acme half EAB", acme + "    eab_key_id: kid\n", []string{"tls.acme.eab_key_id", "both"}},
		{"acme EAB key readable by all", acme + "    eab_key_id: kid\n    eab_mac_key_file: " + open + "\n", []string{"tls.acme.eab_mac_key_file", "chmod 600"}},
		{"acme CA bundle not PEM", acme + "    ca_bundle: " + junk + "\n", []string{"tls.acme.ca_bundle", "no PEM certificates"}},
		{"acme port", acme + "    alt_tls_alpn_port: 70000\n", []string{"tls.acme.alt_tls_alpn_port"}},
		{"files without key", "tls:\n  source: files\n  files:\n    cert: /etc/duo/tls.crt\n", []string{"tls.files.cert", "tls.files.key"}},
		{"files relative", "tls:\n  source: files\n  files:\n    cert: tls.crt\n    key: tls.key\n", []string{"tls.files.cert", "absolute"}},
		{"files missing", "tls:\n  source: files\n  files:\n    cert: /nonexistent/tls.crt\n    key: /nonexistent/tls.key\n", []string{"tls.files.cert", "/nonexistent/tls.crt"}},
		{"unknown key", "tls:\n  sorce: acme\n", []string{"sorce"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStr(tc.yaml)
			wantErr(t, err, tc.want...)
		})
	}
}
