package build

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// licenseName is the License field. The project has published no licence
// yet; this SPDX-style reference says so instead of inventing one.
const licenseName = "LicenseRef-duo-confidential"

// writeDocs writes the generated documentation files into dir: copyright
// (with the Go modules linked into bin) and, for deb, changelog.Debian.gz.
func writeDocs(ctx context.Context, o Options, format, bin, dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create docs directory: %w", err)
	}
	mods, err := linkedModules(ctx, o.GoBin, bin)
	if err != nil {
		return nil, err
	}
	out := map[string]string{"copyright": filepath.Join(dir, "copyright")}
	if err := os.WriteFile(out["copyright"], []byte(copyright(mods, o.MTime.Year())), 0o644); err != nil {
		return nil, fmt.Errorf("write copyright: %w", err)
	}
	man, err := os.ReadFile(filepath.Join(o.Repo, "packaging", "man", Name+".1"))
	if err != nil {
		return nil, fmt.Errorf("read man page: %w", err)
	}
	out["man"] = filepath.Join(dir, Name+".1.gz")
	if err := writeGz(out["man"], man); err != nil {
		return nil, fmt.Errorf("write man page: %w", err)
	}
	if format == "rpm" {
		// nfpm writes the rpm %changelog from a chglog YAML file.
		out["changelog"] = filepath.Join(dir, "changelog.yaml")
		y := fmt.Sprintf("- semver: %q\n  date: %s\n  packager: %q\n  changes:\n    - note: %q\n",
			debVersion(o.Version, o.Release), o.MTime.Format(time.RFC3339), Maintainer, changeNote(o.Version))
		if err := os.WriteFile(out["changelog"], []byte(y), 0o644); err != nil {
			return nil, fmt.Errorf("write changelog: %w", err)
		}
	}
	if format == "deb" {
		out["changelog"] = filepath.Join(dir, "changelog.Debian.gz")
		if err := writeGz(out["changelog"], []byte(changelog(o))); err != nil {
			return nil, fmt.Errorf("write changelog: %w", err)
		}
	}
	return out, nil
}

// linkedModules lists "path version" of every module `go version -m` finds
// in bin, in the order the toolchain recorded them (sorted by path).
func linkedModules(ctx context.Context, goBin, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, goBin, "version", "-m", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("go version -m: %w", err)
	}
	var mods []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "dep" {
			mods = append(mods, f[1]+" "+f[2])
		}
	}
	return mods, nil
}

// copyright is the machine-readable debian/copyright (DEP-5) text, also
// shipped in the rpm as its licence file.
func copyright(mods []string, year int) string {
	var b strings.Builder
	b.WriteString(`Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: duo-confidential
Upstream-Contact: ` + Maintainer + `
Comment: /usr/bin/duo-confidential is a static Go binary. It includes the
 Go standard library (BSD-3-Clause, Copyright The Go Authors) and these Go
 modules, each under the licence in its own source at that version:
`)
	for _, m := range mods {
		b.WriteString(" " + m + "\n")
	}
	b.WriteString(`
Files: *
Copyright: ` + strconv.Itoa(year) + ` The duo-confidential authors
License: ` + licenseName + `
 No licence has been published for duo-confidential yet. Until one is, all
 rights are reserved by its authors.
`)
	return b.String()
}

// changelog is a one-entry Debian changelog for this version.
func changelog(o Options) string {
	return fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * %s\n\n -- %s  %s\n",
		Name, debVersion(o.Version, o.Release), changeNote(o.Version), Maintainer,
		o.MTime.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
}

// writeGz gzips data into path without a name or time in the header and at
// best compression (lintian checks for it), so it is reproducible.
func writeGz(path string, data []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if _, err := zw.Write(data); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// changeNote is the one changelog line of a release.
func changeNote(version string) string {
	return "Release " + version + ". The project's history lists the changes."
}

// debVersion is the version dpkg and rpm show: a semver pre-release sorts before
// the release ("1.2.3~rc1"), then the Debian revision.
func debVersion(version, release string) string {
	v := version
	if i := strings.Index(v, "-"); i >= 0 {
		v = v[:i] + "~" + v[i+1:]
	}
	return v + "-" + release
}
