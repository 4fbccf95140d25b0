package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// parseStr parses a YAML string under the name "config.yaml".
func parseStr(yaml string, env ...string) (*Config, error) {
	return Parse("config.yaml", []byte(yaml), env)
}

// mustParse fails the test if Parse fails.
func mustParse(t *testing.T, yaml string, env ...string) *Config {
	t.Helper()
	c, err := parseStr(yaml, env...)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return c
}

// wantErr asserts that err is non-nil and contains every substring.
func wantErr(t *testing.T, err error, substrings ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse succeeded, want an error containing %q", substrings)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not contain %q; error is:\n%v", s, err)
		}
	}
}

const (
	hexA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	hexB = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
)

func TestParseDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level key", "state_dir: /x\natestation: {}\n",
			[]string{`config.yaml:2: unknown key "atestation" (did you mean "attestation"?)`}},
		{"unknown nested key", "attestation:\n  manifest:\n    mdoe: pinned\n",
			[]string{`config.yaml:3: unknown key "mdoe" in attestation.manifest (did you mean "mode"?)`}},
		{"key in the wrong section", "max_age: 1h\n",
			[]string{`config.yaml:1: unknown key "max_age"`, "belongs under attestation.collateral"}},
		{"unknown key lists known keys", "log:\n  colour: red\n",
			[]string{`config.yaml:2: unknown key "colour" in log`, "known keys here: level, format"}},
		{"scalar where a section goes", "log: debug\n",
			[]string{`config.yaml:1: log: expected a section of keys indented under "log"`}},
		{"list where a scalar goes", "state_dir: [a, b]\n",
			[]string{"config.yaml:1: state_dir: expected a single value, got a list"}},
		{"duration without unit", "outbound:\n  timeout: 15\n",
			[]string{`config.yaml:2: outbound.timeout: "15" has no unit`, `"30s"`}},
		{"bad duration", "attestation:\n  collateral:\n    max_age: 30d\n",
			[]string{`config.yaml:3: attestation.collateral.max_age: "30d" is not a duration`}},
		{"bad bool", "attestation:\n  collateral:\n    online: yes\n",
			[]string{`config.yaml:3: attestation.collateral.online: expected true or false, got "yes"`}},
		{"bad int", "attestation:\n  manifest:\n    max_history: two\n",
			[]string{`config.yaml:3: attestation.manifest.max_history: expected a whole number, got "two"`}},
		{"scalar where a list goes", "attestation:\n  manifest:\n    allowed_sha256: " + hexA + "\n",
			[]string{"config.yaml:3: attestation.manifest.allowed_sha256: expected a list"}},
		{"nested list entry", "attestation:\n  manifest:\n    allowed_sha256:\n      - [x]\n",
			[]string{"config.yaml:4: attestation.manifest.allowed_sha256: list entry 1 must be a single value"}},
		{"duplicate key", "state_dir: /a\nstate_dir: /b\n",
			[]string{`config.yaml:2: key "state_dir" appears twice (first on line 1)`}},
		{"syntax error", "log:\n  level: info\n   format: text\n",
			[]string{"config.yaml:3: YAML syntax error", "spaces, not tabs"}},
		{"tab indentation", "log:\n\tlevel: info\n",
			[]string{"config.yaml:2: YAML syntax error"}},
		{"second document", "state_dir: /a\n---\nstate_dir: /b\n",
			[]string{"config.yaml:2: a second YAML document starts here"}},
		{"top level is a list", "- a\n- b\n",
			[]string{"config.yaml:1: the configuration must be a YAML mapping"}},
		{"top level is text", "hello\n",
			[]string{"config.yaml:1: the configuration must be a YAML mapping"}},
		{"non-scalar key", "? [a]\n: b\n",
			[]string{"config.yaml:1: keys must be plain names"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseStr(tt.yaml)
			wantErr(t, err, tt.want...)
		})
	}
}

func TestParseValidationErrors(t *testing.T) {
	dir := t.TempDir()
	notJSON := writeFile(t, dir, "manifest.txt", "not json", 0o644)
	worldReadable := writeFile(t, dir, "key-644", "secret", 0o644)
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"relative state_dir", "state_dir: var/lib/x\n",
			[]string{`config.yaml:1: state_dir: "var/lib/x" is not an absolute path`}},
		{"empty state_dir", "state_dir: ''\n",
			[]string{"config.yaml:1: state_dir: must be set"}},
		{"bad log level", "log:\n  level: verbos\n",
			[]string{`config.yaml:2: log.level: must be one of debug, info, warn, error; got "verbos"`}},
		{"bad log format", "log:\n  format: jsno\n",
			[]string{`log.format: must be one of text, json; got "jsno" (did you mean "json"?)`}},
		{"http endpoint", "privatemode:\n  endpoint: http://api.privatemode.ai\n",
			[]string{"config.yaml:2: privatemode.endpoint:", "must use https"}},
		{"endpoint with credentials", "privatemode:\n  endpoint: https://u:p@host\n",
			[]string{"privatemode.endpoint:", "contains credentials"}},
		{"endpoint without host", "privatemode:\n  endpoint: https://\n",
			[]string{"privatemode.endpoint:", "has no host name"}},
		{"manifest url with query", "attestation:\n  manifest:\n    url: https://h/m.json?x=1\n",
			[]string{"attestation.manifest.url:", "query or fragment"}},
		{"unknown mode", "attestation:\n  manifest:\n    mode: pined\n",
			[]string{`config.yaml:3: attestation.manifest.mode: must be one of pinned, allowlist, dynamic; got "pined" (did you mean "pinned"?)`}},
		{"pinned without file", "attestation:\n  manifest:\n    mode: pinned\n",
			[]string{`config.yaml:3: attestation.manifest.mode: "pinned" needs attestation.manifest.file (path to the manifest JSON you trust)`}},
		{"pinned with allowlist", "attestation:\n  manifest:\n    mode: pinned\n    file: /nonexistent/m.json\n    allowed_sha256: [" + hexA + "]\n",
			[]string{"attestation.manifest.allowed_sha256: is not used in pinned mode", "/nonexistent/m.json does not exist"}},
		{"pinned file not JSON", "attestation:\n  manifest:\n    mode: pinned\n    file: " + notJSON + "\n",
			[]string{"config.yaml:4: attestation.manifest.file:", "is not valid JSON"}},
		{"pinned relative file", "attestation:\n  manifest:\n    mode: pinned\n    file: m.json\n",
			[]string{`attestation.manifest.file: "m.json" is not an absolute path`}},
		{"allowlist without digests", "attestation:\n  manifest:\n    mode: allowlist\n",
			[]string{`attestation.manifest.mode: "allowlist" needs attestation.manifest.allowed_sha256`}},
		{"file outside pinned mode", "attestation:\n  manifest:\n    file: /m.json\n",
			[]string{"attestation.manifest.file: is only used in pinned mode"}},
		{"bad digest", "attestation:\n  manifest:\n    allowed_sha256:\n      - " + hexA + "\n      - abc123\n",
			[]string{`config.yaml:5: attestation.manifest.allowed_sha256[1]: "abc123" is not a SHA-256 digest`, "64 hex"}},
		{"bad rollback digest", "attestation:\n  manifest:\n    approved_rollbacks: [zz]\n",
			[]string{`attestation.manifest.approved_rollbacks[0]: "zz" is not a SHA-256 digest`}},
		{"max_history zero", "attestation:\n  manifest:\n    max_history: 0\n",
			[]string{"config.yaml:3: attestation.manifest.max_history: 0 is out of range"}},
		{"reattest too often", "attestation:\n  reattest_interval: 30s\n",
			[]string{"config.yaml:2: attestation.reattest_interval: 30s is out of range: set a duration between 1m0s and 24h0m0s"}},
		{"negative timeout", "outbound:\n  timeout: -1s\n",
			[]string{"outbound.timeout: -1s is out of range"}},
		{"max_age too small", "attestation:\n  collateral:\n    max_age: 1m\n",
			[]string{"attestation.collateral.max_age: 1m0s is out of range"}},
		{"relative bundle", "attestation:\n  collateral:\n    bundle: c.json\n",
			[]string{`attestation.collateral.bundle: "c.json" is not an absolute path`}},
		{"missing ca bundle", "outbound:\n  ca_bundle: /nonexistent/ca.pem\n",
			[]string{"config.yaml:2: outbound.ca_bundle: /nonexistent/ca.pem does not exist"}},
		{"api key file missing", "privatemode:\n  api_key_file: /nonexistent/key\n",
			[]string{"privatemode.api_key_file: /nonexistent/key does not exist"}},
		{"api key file world readable", "privatemode:\n  api_key_file: " + worldReadable + "\n",
			[]string{"privatemode.api_key_file:", "accessible to every user", "chmod 600"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseStr(tt.yaml)
			wantErr(t, err, tt.want...)
		})
	}
}

// TestParseReportsAllProblems checks that decode, environment and validation
// problems arrive in one error, so an admin fixes them in one round.
func TestParseReportsAllProblems(t *testing.T) {
	_, err := parseStr("atestation: {}\nlog:\n  level: loud\nstate_dir: rel\n", "DUO_CONFIDENTIAL_NOPE=1")
	wantErr(t, err, `unknown key "atestation"`, "log.level", "state_dir", "DUO_CONFIDENTIAL_NOPE")
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) || len(multi.Unwrap()) != 4 {
		t.Fatalf("want 4 joined problems, got %v", err)
	}
	for _, e := range multi.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Errorf("problem %q is not a *FieldError", e)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	for name, yaml := range map[string]string{
		"empty file":     "",
		"comments only":  "# nothing here\n",
		"null sections":  "log:\nattestation:\n  manifest:\n  collateral: ~\n",
		"empty document": "---\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, yaml)
			if !sameValues(c, Default()) {
				t.Errorf("got %+v\nwant %+v", c, Default())
			}
		})
	}
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default().Validate(): %v", err)
	}
	if d.Attestation.Collateral.Bundle != "/var/lib/duo-confidential/collateral.json" {
		t.Errorf("default bundle = %q", d.Attestation.Collateral.Bundle)
	}
	if !d.Attestation.Collateral.Online || d.Outbound.Timeout != 15*time.Second ||
		d.Attestation.Manifest.Mode != "dynamic" || d.Attestation.ReattestInterval != time.Hour {
		t.Errorf("unexpected defaults: %+v", d)
	}
}

// TestParseDefaultTrueBool checks that collateral.online, which defaults to
// true, tells "omitted" apart from an explicit false.
func TestParseDefaultTrueBool(t *testing.T) {
	tests := []struct {
		yaml string
		env  []string
		want bool
	}{
		{"", nil, true},
		{"attestation:\n  collateral:\n    max_age: 48h\n", nil, true},
		{"attestation:\n  collateral:\n    online:\n", nil, true},
		{"attestation:\n  collateral:\n    online: false\n", nil, false},
		{"attestation:\n  collateral:\n    online: true\n", nil, true},
		{"attestation:\n  collateral:\n    online: \"false\"\n", nil, false},
		{"", []string{"DUO_CONFIDENTIAL_ATTESTATION_COLLATERAL_ONLINE=false"}, false},
		{"attestation:\n  collateral:\n    online: false\n", []string{"DUO_CONFIDENTIAL_ATTESTATION_COLLATERAL_ONLINE=TRUE"}, true},
		{"attestation:\n  collateral:\n    online: false\n", []string{"DUO_CONFIDENTIAL_ATTESTATION_COLLATERAL_ONLINE="}, false},
	}
	for _, tt := range tests {
		c := mustParse(t, tt.yaml, tt.env...)
		if got := c.Attestation.Collateral.Online; got != tt.want {
			t.Errorf("yaml %q env %q: online = %v, want %v", tt.yaml, tt.env, got, tt.want)
		}
	}
}

func TestParseValues(t *testing.T) {
	c := mustParse(t, `
state_dir: /srv/dc
log: {level: debug, format: json}
attestation:
  manifest:
    mode: allowlist
    allowed_sha256:
      - `+strings.ToUpper(hexA)+`
    max_history: 3
  reattest_interval: 10m
`)
	if c.StateDir != "/srv/dc" || c.Log.Level != "debug" || c.Log.Format != "json" {
		t.Errorf("scalars: %+v", c)
	}
	if got := c.Attestation.Manifest.AllowedSHA256; !slices.Equal(got, []string{hexA}) {
		t.Errorf("allowed_sha256 = %q, want lower-cased %q", got, hexA)
	}
	if c.Attestation.Manifest.MaxHistory != 3 || c.Attestation.ReattestInterval != 10*time.Minute {
		t.Errorf("int/duration: %+v", c.Attestation)
	}
	if got := c.Attestation.Collateral.Bundle; got != "/srv/dc/collateral.json" {
		t.Errorf("bundle = %q, want it derived from state_dir", got)
	}
	if got := c.Source("attestation.manifest.max_history"); got != "config.yaml:9" {
		t.Errorf("Source(max_history) = %q", got)
	}
	if got := c.Source("outbound.timeout"); got != "" {
		t.Errorf("Source of a default = %q, want empty", got)
	}
}

func TestParseAliases(t *testing.T) {
	c := mustParse(t, "state_dir: &d /srv/a\nattestation:\n  collateral:\n    bundle: *d\n")
	if c.Attestation.Collateral.Bundle != "/srv/a" {
		t.Errorf("alias not followed: bundle = %q", c.Attestation.Collateral.Bundle)
	}
	// A self-referencing alias must end in an error, not a hang.
	_, err := parseStr("attestation: &a\n  manifest: *a\n")
	wantErr(t, err, `unknown key "manifest" in attestation.manifest`)
}

func TestEnvOverrides(t *testing.T) {
	file := "state_dir: /from/file\noutbound:\n  timeout: 20s\n"
	c := mustParse(t, file,
		"DUO_CONFIDENTIAL_STATE_DIR=/from/env",
		"DUO_CONFIDENTIAL_OUTBOUND_TIMEOUT=45s",
		"DUO_CONFIDENTIAL_ATTESTATION_COLLATERAL_ONLINE=false",
		"DUO_CONFIDENTIAL_ATTESTATION_MANIFEST_ALLOWED_SHA256= "+hexA+" , "+hexB+",",
		"DUO_CONFIDENTIAL_ATTESTATION_MANIFEST_MAX_HISTORY=2",
		"DUO_CONFIDENTIAL_LOG_LEVEL=warn",
		"DUO_CONFIDENTIAL_LOG_FORMAT=", // empty: ignored
		"DUO_CONFIDENTIAL_CONFIG=/elsewhere.yaml",
		"UNRELATED=1",
	)
	if c.StateDir != "/from/env" || c.Outbound.Timeout != 45*time.Second || c.Attestation.Collateral.Online ||
		c.Attestation.Manifest.MaxHistory != 2 || c.Log.Level != "warn" || c.Log.Format != "text" {
		t.Errorf("env not applied: %+v", c)
	}
	if got := c.Attestation.Manifest.AllowedSHA256; !slices.Equal(got, []string{hexA, hexB}) {
		t.Errorf("list from env = %q", got)
	}
	if got := c.Source("state_dir"); got != "env DUO_CONFIDENTIAL_STATE_DIR" {
		t.Errorf("Source(state_dir) = %q", got)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		env  string
		want []string
	}{
		{"DUO_CONFIDENTIAL_STATEDIR=/x", []string{"env DUO_CONFIDENTIAL_STATEDIR: unknown environment variable", `did you mean "DUO_CONFIDENTIAL_STATE_DIR"`}},
		{"DUO_CONFIDENTIAL_BOGUS=1", []string{"env DUO_CONFIDENTIAL_BOGUS: unknown environment variable"}},
		{"DUO_CONFIDENTIAL_OUTBOUND_TIMEOUT=15", []string{"env DUO_CONFIDENTIAL_OUTBOUND_TIMEOUT: outbound.timeout:", "not a duration"}},
		{"DUO_CONFIDENTIAL_ATTESTATION_COLLATERAL_ONLINE=yes", []string{"env DUO_CONFIDENTIAL_ATTESTATION_COLLATERAL_ONLINE: attestation.collateral.online: expected true or false"}},
		{"DUO_CONFIDENTIAL_ATTESTATION_MANIFEST_MAX_HISTORY=x", []string{"attestation.manifest.max_history: expected a whole number"}},
		{"DUO_CONFIDENTIAL_STATE_DIR=rel", []string{`env DUO_CONFIDENTIAL_STATE_DIR: state_dir: "rel" is not an absolute path`}},
		{"DUO_CONFIDENTIAL_ATTESTATION_MANIFEST_ALLOWED_SHA256=" + hexA + ",nothex", []string{"env DUO_CONFIDENTIAL_ATTESTATION_MANIFEST_ALLOWED_SHA256: attestation.manifest.allowed_sha256[1]"}},
	}
	for _, tt := range tests {
		_, err := parseStr("", tt.env)
		wantErr(t, err, tt.want...)
	}
}

func TestEnvNamesAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, l := range schemaLeaves() {
		if other, dup := seen[l.envName()]; dup {
			t.Errorf("keys %s and %s share the variable %s", other, l.dotted(), l.envName())
		}
		seen[l.envName()] = l.dotted()
	}
	if _, clash := seen[EnvConfigPath]; clash {
		t.Errorf("a key maps to %s, which selects the config file", EnvConfigPath)
	}
	for _, want := range []string{"DUO_CONFIDENTIAL_STATE_DIR", "DUO_CONFIDENTIAL_ATTESTATION_MANIFEST_MODE", "DUO_CONFIDENTIAL_LOG_LEVEL"} {
		if _, ok := EnvOverrides()[want]; !ok {
			t.Errorf("EnvOverrides lacks %s", want)
		}
	}
}

// TestSchemaTypes checks every key has a type the decoder supports, so a
// new field of another type cannot ship unnoticed.
func TestSchemaTypes(t *testing.T) {
	for _, l := range schemaLeaves() {
		v := reflect.New(l.typ).Elem()
		sample := map[reflect.Kind]string{reflect.String: "x", reflect.Bool: "true", reflect.Int: "1", reflect.Slice: "a,b"}[l.typ.Kind()]
		if l.typ == durationType {
			sample = "1s"
		}
		if err := setText(v, sample); err != nil {
			t.Errorf("%s: %v", l.dotted(), err)
		}
	}
}

// TestNoKeyWeakensAttestation is a tripwire: trusting non-vendor roots or
// switching attestation off must never be a configuration key (only a
// command-line flag of specific commands). Rename-proofing is impossible,
// but the obvious spellings are caught here and in review.
func TestNoKeyWeakensAttestation(t *testing.T) {
	banned := []string{"insecure", "skip", "disable", "disabled", "enabled", "sandbox", "test", "testing",
		"root", "roots", "anchor", "anchors", "unverified", "verify", "any", "dev", "fake", "mock"}
	for _, l := range schemaLeaves() {
		words := strings.FieldsFunc(l.dotted(), func(r rune) bool { return r == '.' || r == '_' })
		for _, w := range words {
			if slices.Contains(banned, w) {
				t.Errorf("key %s looks like it weakens attestation (word %q)", l.dotted(), w)
			}
		}
	}
}

func TestCABundle(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "ca.pem", string(testutil.NewCA(t, "duo-confidential test CA", time.Hour).PEM), 0o644)
	c := mustParse(t, "outbound:\n  ca_bundle: "+good+"\n")
	pool, err := c.Outbound.RootCAs()
	if err != nil || pool == nil {
		t.Fatalf("RootCAs: %v", err)
	}
	empty := writeFile(t, dir, "empty.pem", "no pem here\n", 0o644)
	_, err = parseStr("outbound:\n  ca_bundle: " + empty + "\n")
	wantErr(t, err, "outbound.ca_bundle:", "holds no PEM certificates")
	key := writeFile(t, dir, "key.pem", string(testutil.NewCA(t, "duo-confidential test CA", time.Hour).PEM)+"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o644)
	_, err = parseStr("outbound:\n  ca_bundle: " + key + "\n")
	wantErr(t, err, `PEM block 2 is a "PRIVATE KEY", not a CERTIFICATE`)
	broken := writeFile(t, dir, "broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0o644)
	_, err = parseStr("outbound:\n  ca_bundle: " + broken + "\n")
	wantErr(t, err, "certificate 1 cannot be parsed")
	if _, err := (OutboundConfig{CABundle: empty}).RootCAs(); err == nil {
		t.Error("RootCAs accepted a bundle without certificates")
	}
}

func TestPinnedAndAPIKeyFilesAccepted(t *testing.T) {
	dir := t.TempDir()
	manifest := writeFile(t, dir, "manifest.json", `{"ReferenceValues":{}}`, 0o644)
	key := writeFile(t, dir, "api-key", "k\n", 0o600)
	c := mustParse(t, "privatemode:\n  api_key_file: "+key+"\nattestation:\n  manifest:\n    mode: pinned\n    file: "+manifest+"\n")
	if c.Attestation.Manifest.File != manifest || c.Privatemode.APIKeyFile != key {
		t.Errorf("got %+v", c)
	}
}

func TestExampleConfig(t *testing.T) {
	c, err := Parse("config.example.yaml", ExampleConfig, nil)
	if err != nil {
		t.Fatalf("example does not parse:\n%v", err)
	}
	// The example promises that it sets every key to its default.
	if !sameValues(c, Default()) {
		t.Errorf("example differs from Default():\n got %+v\nwant %+v", c, Default())
	}
	// Every key of the struct appears in the example, with a comment.
	keys := exampleKeys(t)
	for _, l := range schemaLeaves() {
		comment, ok := keys[l.dotted()]
		if !ok {
			t.Errorf("example lacks key %s", l.dotted())
			continue
		}
		if strings.TrimSpace(comment) == "" {
			t.Errorf("example key %s has no comment above it", l.dotted())
		}
	}
}

// sameValues compares two configs' values, ignoring where they came from.
func sameValues(a, b *Config) bool {
	x, y := *a, *b
	x.sources, y.sources = nil, nil
	norm := func(c *Config) {
		m := &c.Attestation.Manifest
		if len(m.AllowedSHA256) == 0 {
			m.AllowedSHA256 = nil
		}
		if len(m.ApprovedRollbacks) == 0 {
			m.ApprovedRollbacks = nil
		}
		if len(c.Proxy.InboundTokenSHA256) == 0 {
			c.Proxy.InboundTokenSHA256 = nil
		}
		if len(c.Gateway.AllowedModels) == 0 {
			c.Gateway.AllowedModels = nil
		}
		if len(c.AgentPlatform.ModelContextWindows) == 0 {
			c.AgentPlatform.ModelContextWindows = nil
		}
		if len(c.TLS.Names) == 0 {
			c.TLS.Names = nil
		}
		if len(c.TLS.ACME.Challenges) == 0 {
			c.TLS.ACME.Challenges = nil
		}
		if len(c.Admin.TokenSHA256) == 0 {
			c.Admin.TokenSHA256 = nil
		}
		if len(c.Admin.AllowedNetworks) == 0 {
			c.Admin.AllowedNetworks = nil
		}
		tdx := &c.Attestation.TCBPolicy.TDX
		if len(tdx.AcceptStatuses) == 0 {
			tdx.AcceptStatuses = nil
		}
		if len(tdx.AcceptAdvisories) == 0 {
			tdx.AcceptAdvisories = nil
		}
	}
	norm(&x)
	norm(&y)
	return reflect.DeepEqual(x, y)
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "config.yaml", "state_dir: /srv/load\n", 0o644)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.StateDir != "/srv/load" || c.Source("state_dir") != path+":1" {
		t.Errorf("Load: state_dir %q from %q", c.StateDir, c.Source("state_dir"))
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}
}

func TestProxyConfig(t *testing.T) {
	dir := t.TempDir()
	salt := writeFile(t, dir, "salt", strings.Repeat("s", 40), 0o600)
	short := writeFile(t, dir, "short", "tooshort", 0o600)
	digest := strings.Repeat("ab", 32)
	ok := mustParse(t, "proxy:\n  listen: 0.0.0.0:8443\n  inbound_token_sha256: ["+strings.ToUpper(digest)+"]\n  cache_salt: shared\n  shared_salt_file: "+salt+"\n  stream_idle_timeout: 30s\n")
	if ok.Proxy.Listen != "0.0.0.0:8443" || ok.Proxy.InboundTokenSHA256[0] != digest || ok.Proxy.StreamIdleTimeout != 30*time.Second {
		t.Fatalf("got %+v", ok.Proxy)
	}
	tests := []struct{ in, want string }{
		{"proxy:\n  listen: 0.0.0.0:8080\n", "inbound_token_sha256 must list"},
		{"proxy:\n  listen: nonsense\n", "not HOST:PORT"},
		{"proxy:\n  inbound_token_sha256: [abc]\n", "not a SHA-256"},
		{"proxy:\n  cache_salt: shared\n", "needs proxy.shared_salt_file"},
		{"proxy:\n  cache_salt: shared\n  shared_salt_file: " + short + "\n", "fewer than 32"},
		{"proxy:\n  shared_salt_file: " + salt + "\n", "only used when"},
		{"proxy:\n  cache_salt: sometimes\n", "must be one of"},
		{"proxy:\n  max_request_bytes: 10\n", "out of range"},
		{"proxy:\n  stream_idle_timeout: 2h\n", "out of range"},
	}
	for _, tc := range tests {
		_, err := Parse("c.yaml", []byte(tc.in), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.want)
		}
	}
	c, err := Parse("c.yaml", nil, []string{"DUO_CONFIDENTIAL_PROXY_LISTEN=[::1]:9000", "DUO_CONFIDENTIAL_PROXY_STRICT_OCSP=true"})
	if err != nil || c.Proxy.Listen != "[::1]:9000" || !c.Proxy.StrictOCSP {
		t.Fatalf("env overrides: %+v, %v", c, err)
	}
}

func TestTCBPolicyConfig(t *testing.T) {
	c := mustParse(t, "attestation:\n  tcb_policy:\n    tdx:\n      accept_statuses: [SWHardeningNeeded]\n      accept_advisories: [INTEL-SA-00615]\n    snp:\n      minimum_tcb:\n        turin: \"fmc=1 snp=22\"\n")
	p, err := c.TCBPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.TDXAcceptStatuses) != 1 || p.TDXAcceptAdvisories[0] != "INTEL-SA-00615" {
		t.Fatalf("TDX policy %+v", p)
	}
	m, ok := p.SNPMinimumTCB["Turin"]
	if !ok || m.FMC == nil || *m.FMC != 1 || *m.SNP != 22 || m.Bootloader != nil {
		t.Fatalf("Turin floor %+v", m)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"attestation:\n  tcb_policy:\n    tdx:\n      accept_statuses: [Revoked]\n", "attestation.tcb_policy"},
		{"attestation:\n  tcb_policy:\n    tdx:\n      accept_advisories: [CVE-2024-1]\n", "attestation.tcb_policy"},
		{"attestation:\n  tcb_policy:\n    snp:\n      minimum_tcb:\n        milan: \"fmc=1\"\n", "attestation.tcb_policy.snp.minimum_tcb.milan"},
		{"attestation:\n  tcb_policy:\n    snp:\n      minimum_tcb:\n        genoa: \"snp=300\"\n", "attestation.tcb_policy.snp.minimum_tcb.genoa"},
	} {
		_, err := Parse("test.yaml", []byte(tc.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: got %v, want an error naming %s", tc.yaml, err, tc.key)
		}
	}
}
