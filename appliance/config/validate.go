package config

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// Bounds enforced by Validate. They are wide enough for any sane deployment
// and narrow enough to catch unit slips ("15ms" for "15s", "1m" for "1h").
const (
	minOutboundTimeout  = time.Second
	maxOutboundTimeout  = 10 * time.Minute
	minReattestInterval = time.Minute
	// A re-attestation gap longer than a day would let a replaced or rolled
	// back deployment go unnoticed for days.
	maxReattestInterval = 24 * time.Hour
	minCollateralMaxAge = time.Hour
	maxCollateralMaxAge = 365 * 24 * time.Hour
	maxManifestHistory  = 100
	maxManifestFileSize = 16 << 20
)

var (
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
	manifestModes  = []string{ManifestModePinned, ManifestModeAllowlist, ManifestModeDynamic}
	cacheSaltModes = []string{CacheSaltPerRequest, CacheSaltShared}
)

// normalize canonicalises values whose spelling does not matter, so later
// code can compare them byte for byte: hex digests become lower case.
func (c *Config) normalize() {
	m := &c.Attestation.Manifest
	for i, s := range m.AllowedSHA256 {
		m.AllowedSHA256[i] = strings.ToLower(strings.TrimSpace(s))
	}
	for i, s := range m.ApprovedRollbacks {
		m.ApprovedRollbacks[i] = strings.ToLower(strings.TrimSpace(s))
	}
	for i, s := range c.Proxy.InboundTokenSHA256 {
		c.Proxy.InboundTokenSHA256[i] = strings.ToLower(strings.TrimSpace(s))
	}
	c.normalizeAdmin()
}

// Validate checks every key and returns all problems together (errors.Join
// of *FieldError), each naming the key, what is wrong and how to fix it. It
// stats and reads the files the configuration names (CA bundle, pinned
// manifest, API key file) so `config check` catches a missing file before
// the service does. It does not change c.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.paths()
	v.log()
	v.outbound()
	v.privatemode()
	v.manifest()
	v.collateral()
	v.proxy()
	v.gateway()
	v.agentPlatform()
	v.tls()
	v.admin()
	v.gitlabAdmin()
	v.receipts()
	return errors.Join(v.errs...)
}

// validator collects FieldErrors, attaching each key's source.
type validator struct {
	c    *Config
	errs []error
}

func (v *validator) fail(path, format string, args ...any) {
	src := v.c.sources[path]
	if src == "" {
		// A list entry may have no source of its own; use the list's.
		if base, _, ok := strings.Cut(path, "["); ok {
			src = v.c.sources[base]
		}
	}
	v.errs = append(v.errs, &FieldError{Source: src, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// absPath checks that a path-valued key is absolute: the service's working
// directory is not something an admin should have to reason about.
func (v *validator) absPath(path, value string) bool {
	if !filepath.IsAbs(value) {
		v.fail(path, "%q is not an absolute path; write the full path starting with \"/\"", value)
		return false
	}
	return true
}

func (v *validator) oneOf(path, value string, allowed []string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.fail(path, "must be one of %s; got %q%s", strings.Join(allowed, ", "), value, didYouMean(value, allowed))
}

func (v *validator) durationIn(path string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.fail(path, "%s is out of range: set a duration between %s and %s", d, lo, hi)
	}
}

// httpsURL checks that raw is an https URL with a host and nothing that
// would be silently dropped or leak credentials.
// intIn fails unless lo ≤ n ≤ hi.
func (v *validator) intIn(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.fail(path, "%d is out of range: set between %d and %d", n, lo, hi)
	}
}

func (v *validator) httpsURL(path, raw string) {
	if raw == "" {
		v.fail(path, "must be set to an https URL (remove the key to use the default)")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.fail(path, "%q is not a URL: %v", raw, err)
	case u.Scheme != "https":
		v.fail(path, "%q must use https: plain http would expose the request to anyone on the network path", raw)
	case u.Host == "":
		v.fail(path, "%q has no host name; write it like \"https://host.example\"", raw)
	case u.User != nil:
		v.fail(path, "%q contains credentials; remove them from the URL (the API key goes in privatemode.api_key_file)", raw)
	case u.RawQuery != "" || u.Fragment != "":
		v.fail(path, "%q must not contain a query or fragment (\"?\" or \"#\")", raw)
	}
}

// sha256List checks that every entry is a hex SHA-256 digest.
func (v *validator) sha256List(path string, list []string) {
	for i, s := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		if _, err := hex.DecodeString(s); err != nil || len(s) != 64 {
			v.fail(p, "%q is not a SHA-256 digest: want 64 hex characters, such as the first field that `sha256sum manifest.json` prints", s)
		}
	}
}

func (v *validator) paths() {
	if v.c.StateDir == "" {
		v.fail("state_dir", "must be set (remove the key to use %s)", DefaultStateDir)
		return
	}
	v.absPath("state_dir", v.c.StateDir)
}

func (v *validator) log() {
	v.oneOf("log.level", v.c.Log.Level, logLevels)
	v.oneOf("log.format", v.c.Log.Format, logFormats)
}

func (v *validator) outbound() {
	o := v.c.Outbound
	v.durationIn("outbound.timeout", o.Timeout, minOutboundTimeout, maxOutboundTimeout)
	if o.CABundle != "" && v.absPath("outbound.ca_bundle", o.CABundle) {
		if _, err := readCABundle(o.CABundle); err != nil {
			v.fail("outbound.ca_bundle", "%v", err)
		}
	}
}

func (v *validator) privatemode() {
	p := v.c.Privatemode
	v.httpsURL("privatemode.endpoint", p.Endpoint)
	if p.APIKeyFile == "" || !v.absPath("privatemode.api_key_file", p.APIKeyFile) {
		return
	}
	v.secretFile("privatemode.api_key_file", p.APIKeyFile, "the Privatemode API key")
}

// secretFile checks that a file holding a secret exists, is a regular file
// and is not readable by every user.
func (v *validator) secretFile(path, file, what string) {
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.fail(path, "%s does not exist; write %s into it (owner the service user, mode 0600) or remove the key", file, what)
	case err != nil:
		v.fail(path, "cannot check %s: %v", file, err)
	case !fi.Mode().IsRegular():
		v.fail(path, "%s is not a regular file; it must be the file holding %s", file, what)
	case fi.Mode().Perm()&0o007 != 0:
		v.fail(path, "%s is accessible to every user on this machine (mode %#o); run: chmod 600 %s", file, uint32(fi.Mode().Perm()), file)
	}
}

func (v *validator) manifest() {
	m := v.c.Attestation.Manifest
	const p = "attestation.manifest"
	v.oneOf(p+".mode", m.Mode, manifestModes)
	switch m.Mode {
	case ManifestModePinned:
		if m.File == "" {
			v.fail(p+".mode", "%q needs %s.file (path to the manifest JSON you trust)", m.Mode, p)
		}
		if len(m.AllowedSHA256) > 0 {
			v.fail(p+".allowed_sha256", "is not used in pinned mode, which trusts exactly %s.file; remove it, or set mode to \"allowlist\" to accept several manifests", p)
		}
	case ManifestModeAllowlist:
		if len(m.AllowedSHA256) == 0 {
			v.fail(p+".mode", "%q needs %s.allowed_sha256 (the SHA-256 of each manifest you accept)", m.Mode, p)
		}
	}
	if m.File != "" && m.Mode != ManifestModePinned {
		v.fail(p+".file", "is only used in pinned mode; remove it, or set %s.mode to \"pinned\"", p)
	}
	if m.File != "" && v.absPath(p+".file", m.File) {
		v.manifestFile(p+".file", m.File)
	}
	v.sha256List(p+".allowed_sha256", m.AllowedSHA256)
	v.sha256List(p+".approved_rollbacks", m.ApprovedRollbacks)
	v.httpsURL(p+".url", m.URL)
	if m.MaxHistory < 1 || m.MaxHistory > maxManifestHistory {
		v.fail(p+".max_history", "%d is out of range: set 1 (accept only the current manifest) up to %d", m.MaxHistory, maxManifestHistory)
	}
	v.durationIn("attestation.reattest_interval", v.c.Attestation.ReattestInterval, minReattestInterval, maxReattestInterval)
}

// manifestFile checks that the pinned manifest exists and is JSON; its
// content is judged by the attestation code.
func (v *validator) manifestFile(path, file string) {
	fi, err := os.Stat(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			v.fail(path, "%s does not exist; save the manifest JSON you trust there", file)
			return
		}
		v.fail(path, "cannot read %s: %v", file, err)
		return
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxManifestFileSize {
		v.fail(path, "%s is not a manifest JSON file (not a regular file, or larger than %d bytes)", file, maxManifestFileSize)
		return
	}
	data, err := os.ReadFile(file)
	if err != nil {
		v.fail(path, "cannot read %s: %v", file, err)
		return
	}
	if !json.Valid(data) {
		v.fail(path, "%s is not valid JSON; it must be the manifest exactly as published", file)
	}
}

func (v *validator) collateral() {
	col := v.c.Attestation.Collateral
	switch {
	case col.Bundle != "":
		v.absPath("attestation.collateral.bundle", col.Bundle)
	case filepath.IsAbs(v.c.StateDir):
		// Parse derives the default; only a Config built in code gets here.
		v.fail("attestation.collateral.bundle", "must be set (the default is <state_dir>/%s)", statedir.CollateralFile)
	}
	v.durationIn("attestation.collateral.max_age", col.MaxAge, minCollateralMaxAge, maxCollateralMaxAge)
	if _, err := v.c.TCBPolicy(); err != nil {
		key, msg, _ := strings.Cut(err.Error(), ": ")
		v.fail(key, "%s", msg)
	}
}

func (v *validator) proxy() {
	p := v.c.Proxy
	host, port, err := net.SplitHostPort(p.Listen)
	switch {
	case err != nil:
		v.fail("proxy.listen", "%q is not HOST:PORT (e.g. 127.0.0.1:8080): %v", p.Listen, err)
	case port == "":
		v.fail("proxy.listen", "%q has no port", p.Listen)
	case !isLoopback(host) && len(p.InboundTokenSHA256) == 0:
		v.fail("proxy.listen", "%q is reachable from other machines, so proxy.inbound_token_sha256 must list at least one token digest (`duo-confidential proxy token` makes one); without tokens anyone on the network could spend your Privatemode key", p.Listen)
	}
	v.sha256List("proxy.inbound_token_sha256", p.InboundTokenSHA256)
	if p.MaxRequestBytes < 1<<10 || p.MaxRequestBytes > 256<<20 {
		v.fail("proxy.max_request_bytes", "%d is out of range: set between 1024 and %d bytes", p.MaxRequestBytes, 256<<20)
	}
	v.intIn("proxy.max_in_flight", p.MaxInFlight, 1, 65536)
	v.durationIn("proxy.read_timeout", p.ReadTimeout, time.Second, 10*time.Minute)
	v.durationIn("proxy.upstream_timeout", p.UpstreamTimeout, time.Second, time.Hour)
	v.durationIn("proxy.stream_idle_timeout", p.StreamIdleTimeout, time.Second, time.Hour)
	v.oneOf("proxy.cache_salt", p.CacheSalt, cacheSaltModes)
	switch {
	case p.CacheSalt == CacheSaltShared && p.SharedSaltFile == "":
		v.fail("proxy.cache_salt", "%q needs proxy.shared_salt_file (a file holding a secret of at least 32 characters)", p.CacheSalt)
	case p.CacheSalt != CacheSaltShared && p.SharedSaltFile != "":
		v.fail("proxy.shared_salt_file", "is only used when proxy.cache_salt is %q; remove it or set the mode", CacheSaltShared)
	case p.SharedSaltFile != "" && v.absPath("proxy.shared_salt_file", p.SharedSaltFile):
		b, err := os.ReadFile(p.SharedSaltFile)
		if err != nil {
			v.fail("proxy.shared_salt_file", "cannot read %s: %v", p.SharedSaltFile, err)
		} else if len(strings.TrimSpace(string(b))) < 32 {
			v.fail("proxy.shared_salt_file", "%s holds fewer than 32 characters; the backend refuses shorter salts", p.SharedSaltFile)
		}
	}
}

// isLoopback reports whether host (an IP or name) only reaches this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
