package doctor

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/internal/wording"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// minFreeBytes is the free space below which the state directory check
// warns: the trust log, collateral and certificates are small, but an
// atomic rewrite needs room for a second copy.
const minFreeBytes = 100 << 20

// maxListed bounds how many offending files one result names.
const maxListed = 5

// checkConfig loads the configuration exactly as `config check` does.
func (e *env) checkConfig(context.Context) checkResult {
	path := e.o.ConfigPath
	cfg, found, err := e.o.LoadConfig()
	if err != nil {
		return fail("fix what is listed, then run `duo-confidential config check`", "%v", err)
	}
	e.cfg = cfg
	detail := path + " is valid"
	if !found {
		detail = path + " not found: built-in defaults"
	}
	if envs := cfg.EnvOverridden(); len(envs) > 0 {
		detail += "; overridden by " + strings.Join(envs, ", ")
	}
	return pass("%s", detail)
}

// checkStateDir checks the state directory as docs/operations.md "Files
// and permissions" states it: the service user's, 0700, each file no more
// open than its kind allows, writable, with room to spare.
func (e *env) checkStateDir(context.Context) checkResult {
	dir, o := e.cfg.StateDir, e.owner
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return warn(fmt.Sprintf("the package creates it; by hand: install -d -m 700 -o %[1]s -g %[1]s %[2]s", o.name, dir),
			"%s does not exist yet (the service creates it on first start)", dir)
	case err != nil:
		return fail("check the path and the permissions of its parents", "cannot read the state directory: %v", err)
	case !fi.IsDir():
		return fail("move the file aside or set state_dir to a directory", "%s is not a directory", dir)
	}
	var modes, owners []string
	var fixes []string
	chowned := false
	walkErr := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			modes = append(modes, err.Error())
			return nil
		}
		info, err := d.Info()
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		want := StateFileMode(rel, d.IsDir())
		if path == e.cfg.BundlePath() {
			want = statedir.PublicMode // a bundle configured under another name
		}
		if perm := info.Mode().Perm(); perm&^want != 0 {
			if len(modes) < maxListed {
				modes = append(modes, fmt.Sprintf("%s has mode %04o, want %04o", path, perm, want))
				fixes = append(fixes, fmt.Sprintf("chmod %o %s", want, path))
			} else if len(modes) == maxListed {
				modes = append(modes, "…")
			}
		}
		if uid, _, ok := fileOwner(info); ok && uid != o.uid {
			if len(owners) < maxListed {
				owners = append(owners, fmt.Sprintf("%s is owned by uid %d, not %s", path, uid, o.name))
			}
			if !chowned {
				chowned = true
				fixes = append(fixes, fmt.Sprintf("chown -R %[1]s:%[1]s %[2]s", o.name, dir))
			}
		}
		return nil
	})
	if walkErr != nil {
		modes = append(modes, walkErr.Error())
	}
	if problems := append(owners, modes...); len(problems) > 0 {
		return fail(strings.Join(fixes, "\n"), "%s", strings.Join(problems, "\n"))
	}
	writable := "writable"
	if o.self {
		f, err := os.CreateTemp(dir, ".doctor-*")
		if err != nil {
			return fail(fmt.Sprintf("chmod u+w %s, or check the file system (read-only mount?)", dir), "cannot write in %s: %v", dir, err)
		}
		_ = f.Close()
		_ = os.Remove(f.Name())
	} else if fi.Mode().Perm()&0o200 == 0 {
		return fail("chmod 700 "+dir, "%s is not writable by its owner %s", dir, o.name)
	} else {
		writable = "writable by " + o.name
	}
	detail := fmt.Sprintf("%s: owner %s, mode 0700, %s", dir, o.name, writable)
	free, err := freeBytes(dir)
	switch {
	case err != nil:
		detail += "; free space unknown: " + err.Error()
	case free < minFreeBytes:
		return warn("free space on the file system of "+dir, "%s; only %d MB free", detail, free>>20)
	default:
		detail += fmt.Sprintf(", %d MB free", free>>20)
	}
	return pass("%s", detail)
}

// secretFile is one configured file holding a secret, outside the state
// directory's own checks.
type secretFile struct{ key, path string }

// checkKeyFiles checks the configured secret files: present, 0600, and
// readable by the service user. The Privatemode API key is the one the
// service cannot start without.
func (e *env) checkKeyFiles(context.Context) checkResult {
	c := e.cfg
	var files []secretFile
	add := func(key, path string) {
		if path != "" {
			files = append(files, secretFile{key, path})
		}
	}
	add("privatemode.api_key_file", c.Privatemode.APIKeyFile)
	if c.TLS.Source == apptls.SourceFiles {
		add("tls.files.key", c.TLS.Files.Key)
	}
	if c.TLS.Source == apptls.SourceACME {
		add("tls.acme.eab_mac_key_file", c.TLS.ACME.EABMACKeyFile)
	}
	add("gateway.signing_key_file", c.Gateway.SigningKeyFile)
	add("gateway.validation_key_file", c.Gateway.ValidationKeyFile)
	if c.Proxy.CacheSalt == config.CacheSaltShared {
		add("proxy.shared_salt_file", c.Proxy.SharedSaltFile)
	}
	if p := c.AdminPasswordPath(); !strings.HasPrefix(p, c.StateDir+string(filepath.Separator)) {
		if _, err := os.Stat(p); err == nil {
			add("admin.password_file", p)
		}
	}
	var problems, fixes, ok []string
	for _, f := range files {
		fi, err := os.Stat(f.path)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", f.key, err))
			fixes = append(fixes, fmt.Sprintf("write the secret into %s (mode 0600, owner %s) or remove %s", f.path, e.owner.name, f.key))
			continue
		case fi.Mode().Perm()&0o077 != 0:
			problems = append(problems, fmt.Sprintf("%s: %s has mode %04o, want 0600", f.key, f.path, fi.Mode().Perm()))
			fixes = append(fixes, "chmod 600 "+f.path)
			continue
		}
		if uid, _, known := fileOwner(fi); known && uid != e.owner.uid {
			problems = append(problems, fmt.Sprintf("%s: %s is owned by uid %d: the service (%s) cannot read it", f.key, f.path, uid, e.owner.name))
			fixes = append(fixes, fmt.Sprintf("chown %s %s", e.owner.name, f.path))
			continue
		}
		ok = append(ok, f.key)
	}
	if len(problems) > 0 {
		return fail(strings.Join(fixes, "\n"), "%s", strings.Join(problems, "\n"))
	}
	switch {
	case c.Privatemode.APIKeyFile == "" && e.o.Sandbox != "" && len(ok) == 0:
		return skip("no secret files configured (--sandbox: the sandbox brings its own API key)")
	case c.Privatemode.APIKeyFile == "" && e.o.Sandbox == "":
		return warn("write the key into /etc/duo-confidential/privatemode-api-key (owner "+e.owner.name+", mode 0600) and set privatemode.api_key_file to that path",
			"privatemode.api_key_file is not set: `serve` does not start without the Privatemode API key")
	case len(ok) == 0:
		return skip("no secret files configured")
	}
	return pass("%s: mode 0600, owner %s", strings.Join(ok, ", "), e.owner.name)
}

// checkTLS checks, without the network, that the certificate source can
// serve: the operator's files load and cover tls.names, or the local CA
// opens; nothing is created.
func (e *env) checkTLS(context.Context) checkResult {
	c := e.cfg
	names := strings.Join(c.TLSNames(), ", ")
	switch c.TLS.Source {
	case apptls.SourceOff:
		return warn("set tls.source to local-ca (the default), acme or files; plain HTTP is only for a TLS-terminating proxy on this machine",
			"tls.source is off: every listener serves plain HTTP")
	case apptls.SourceFiles:
		f := c.TLS.Files
		if err := apptls.CheckFiles(f.Cert, f.Key, c.TLSNames(), e.now); err != nil {
			return fail("install a certificate and key that match and cover tls.names (docs/operations.md \"Your own certificate files\")", "%v", err)
		}
		leaf, err := firstCertificate(f.Cert)
		if err != nil {
			return fail("check "+f.Cert, "%v", err)
		}
		left := leaf.NotAfter.Sub(e.now)
		if left < c.LeafExpiryWarning() {
			return warn("install a renewed certificate and run `systemctl reload duo-confidential`",
				"%s expires %s (in %s)", f.Cert, leaf.NotAfter.UTC().Format(time.RFC3339), roundDays(left))
		}
		return pass("%s covers %s, valid until %s", f.Cert, wording.OrDash(names), leaf.NotAfter.UTC().Format("2006-01-02"))
	case apptls.SourceACME:
		return pass("ACME from %s for %s; the certificate itself is checked online (tls-proxy)", c.TLS.ACME.Directory, names)
	}
	keyPath, certPath := c.LocalCAPaths()
	dir := filepath.Dir(certPath)
	if _, err := os.Stat(certPath); errors.Is(err, fs.ErrNotExist) {
		return warn("start the service; then add the CA to GitLab's trust store (`duo-confidential tls ca-cert`, docs/operations.md \"Local CA\")",
			"local CA not created yet: the service creates it in %s on first start, with leaves for %s", dir, names)
	}
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Sprintf("restore %s from the backup, or move %s aside to mint a new CA (clients must then trust the new root)", keyPath, certPath),
			"%s exists without its key %s", certPath, keyPath)
	}
	ca, err := apptls.OpenLocalCA(dir, apptls.LocalCAOptions{LeafLifetime: c.TLS.LocalCA.LeafLifetime})
	if err != nil {
		return fail("see the message; the CA's files are in "+dir, "%v", err)
	}
	root := ca.Certificate()
	sum := sha256.Sum256(root.Raw)
	if left := root.NotAfter.Sub(e.now); left < 14*24*time.Hour {
		return warn(fmt.Sprintf("move %s aside to mint a new CA at the next start, and give GitLab the new certificate", dir),
			"local CA root expires %s (in %s)", root.NotAfter.UTC().Format(time.RFC3339), roundDays(left))
	}
	return pass("local CA %q (SHA-256 %X…) valid until %s; leaves for %s", root.Subject.CommonName, sum[:4],
		root.NotAfter.UTC().Format("2006-01-02"), names)
}

// checkCollateral reports the installed bundle's freshness as `collateral
// show` does; a missing or stale bundle is a warning while online fetching
// may repair it, a failure otherwise.
func (e *env) checkCollateral(context.Context) checkResult {
	col := e.cfg.Attestation.Collateral
	path := e.cfg.BundlePath()
	const fix = "`duo-confidential collateral export` on a connected machine, then `duo-confidential collateral import` here (docs/operations.md \"Air-gapped sites\")"
	b, err := collateral.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && col.Online:
		return warn("nothing, if the appliance reaches Intel PCS / AMD KDS; for an air-gapped site: "+fix,
			"no collateral bundle at %s yet: attestation.collateral.online is on, so the service fetches it", path)
	case errors.Is(err, fs.ErrNotExist):
		return fail(fix, "no collateral bundle at %s and attestation.collateral.online is off: attestation cannot succeed", path)
	case err != nil:
		return fail("move the file aside and import a fresh bundle: "+fix, "%v", err)
	}
	infos := collateral.Inspect(b, e.now, col.MaxAge)
	if len(infos) == 0 {
		return warn(fix, "%s holds no items", path)
	}
	oldest := infos[0].Age
	for _, i := range infos {
		oldest = max(oldest, i.Age)
	}
	detail := fmt.Sprintf("%s: %d items, oldest fetched %s ago (max age %s)", path, len(infos), roundDays(oldest), wording.Duration(col.MaxAge))
	if err := b.Check(e.now, col.MaxAge); err != nil {
		if col.Online {
			return warn("nothing, if the appliance reaches Intel PCS / AMD KDS (stale items are refetched); otherwise "+fix, "%s\n%v", detail, err)
		}
		return fail(fix, "%s\n%v", detail, err)
	}
	return pass("%s", detail)
}

// checkTrustLog verifies the trust log's hash chain; it never writes it.
func (e *env) checkTrustLog(context.Context) checkResult {
	tl, err := attest.OpenTrustLog(e.cfg.TrustLogPath())
	if err != nil {
		return fail("keep the file for investigation and move it aside to start a new log (docs/operations.md \"The trust log\")", "%v", err)
	}
	entries, err := tl.Entries()
	if err != nil {
		return fail("see docs/operations.md \"The trust log\"", "%v", err)
	}
	if len(entries) == 0 {
		return pass("%s: no entries yet (nothing attested on this machine so far)", tl.Path())
	}
	att := attest.Attestations(entries)
	if len(att) == 0 {
		return pass("%s: %d %s (events only), hash chain intact; nothing attested on this machine so far", tl.Path(), len(entries), wording.Plural(len(entries), "entry", "entries"))
	}
	last := att[len(att)-1]
	return pass("%s: %d %s, hash chain intact; last %s %s at %s, manifest %s…", tl.Path(), len(entries), wording.Plural(len(entries), "entry", "entries"),
		last.Verdict, last.Platform, last.Time.UTC().Format(time.RFC3339), short12(last.ManifestSHA256))
}

// roundDays prints a duration as days once it is longer than two, else
// hours and minutes.
func roundDays(d time.Duration) string {
	if d >= 48*time.Hour || d <= -48*time.Hour {
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return wording.Duration(d.Round(time.Minute))
}

func short12(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
