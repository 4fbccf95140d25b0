// Package build makes the duo-confidential .deb and .rpm packages: it
// compiles the appliance binary (static, trimmed, version stamped) and hands
// it with the unit, the configuration, the maintainer scripts and the docs to
// nfpm. Everything that could vary between two builds of the same checkout
// (file times, order, host name, build paths) is fixed, so the same input
// gives the same bytes.
package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Name is the package name, the binary's name and the service user's name.
const Name = "duo-confidential"

// Options says what to build and from where. Zero fields take the defaults
// documented on each.
type Options struct {
	Repo    string    // repository root (holds go.mod and cmd/duo-confidential); required
	OutDir  string    // where packages go; default <Repo>/dist
	Version string    // package version such as 1.2.3 or 1.2.3-rc1; default from `git describe`, else 0.0.0-dev
	Release string    // package release (the Debian revision); default "1"
	Arches  []string  // GOARCH values; default amd64
	Formats []string  // "deb", "rpm"; default both
	MTime   time.Time // time of every file; default SOURCE_DATE_EPOCH, else the HEAD commit's time
	GoBin   string    // the go command; default "go" from PATH
}

// Artifact is one package written by Build.
type Artifact struct {
	Format string // "deb" or "rpm"
	Arch   string // GOARCH it was built for
	Path   string // absolute path of the package file
}

// Build compiles the binary for every arch and writes every format's package
// into OutDir, returning them in a fixed order (arch, then format).
func Build(ctx context.Context, opts Options) ([]Artifact, error) {
	o, err := resolve(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	stage, err := os.MkdirTemp("", "duo-confidential-pkg-")
	if err != nil {
		return nil, fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)

	var out []Artifact
	for _, arch := range o.Arches {
		archStage := filepath.Join(stage, arch)
		if err := os.MkdirAll(archStage, 0o755); err != nil {
			return nil, fmt.Errorf("create staging directory: %w", err)
		}
		bin, err := compile(ctx, o, arch, archStage)
		if err != nil {
			return nil, err
		}
		for _, format := range o.Formats {
			path, err := pack(ctx, o, format, arch, bin, archStage)
			if err != nil {
				return nil, fmt.Errorf("build %s for %s: %w", format, arch, err)
			}
			out = append(out, Artifact{Format: format, Arch: arch, Path: path})
		}
	}
	return out, nil
}

// resolve fills in the defaults and checks the options.
func resolve(ctx context.Context, o Options) (Options, error) {
	if o.Repo == "" {
		return o, errors.New("repository root not set")
	}
	repo, err := filepath.Abs(o.Repo)
	if err != nil {
		return o, fmt.Errorf("resolve repository root: %w", err)
	}
	o.Repo = repo
	if _, err := os.Stat(filepath.Join(repo, "cmd", Name, "main.go")); err != nil {
		return o, fmt.Errorf("%s is not the duo-confidential repository root: %w", repo, err)
	}
	if o.OutDir == "" {
		o.OutDir = filepath.Join(repo, "dist")
	}
	if o.OutDir, err = filepath.Abs(o.OutDir); err != nil {
		return o, fmt.Errorf("resolve output directory: %w", err)
	}
	if o.GoBin == "" {
		o.GoBin = "go"
	}
	if o.Release == "" {
		o.Release = "1"
	}
	if len(o.Arches) == 0 {
		o.Arches = []string{"amd64"}
	}
	for _, a := range o.Arches {
		if a != "amd64" && a != "arm64" {
			return o, fmt.Errorf("unsupported arch %q (amd64, arm64)", a)
		}
	}
	if len(o.Formats) == 0 {
		o.Formats = []string{"deb", "rpm"}
	}
	for _, f := range o.Formats {
		if f != "deb" && f != "rpm" {
			return o, fmt.Errorf("unsupported format %q (deb, rpm)", f)
		}
	}
	if o.Version == "" {
		o.Version = gitVersion(ctx, repo)
	}
	o.Version = strings.TrimPrefix(o.Version, "v")
	if !versionRE.MatchString(o.Version) {
		return o, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH[-PRERELEASE]", o.Version)
	}
	if o.MTime.IsZero() {
		if o.MTime, err = sourceDate(ctx, repo); err != nil {
			return o, err
		}
	}
	o.MTime = o.MTime.UTC()
	return o, nil
}

// versionRE accepts the semver subset both dpkg and rpm order correctly once
// nfpm maps the pre-release to "~rc1".
var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$`)

// gitVersion is the nearest v-tag as git describes it (v1.2.3 or
// v1.2.3-4-gabcdef when past it, mapped to 1.2.3-4.gabcdef), or 0.0.0-dev
// outside git or without tags.
func gitVersion(ctx context.Context, repo string) string {
	out, err := git(ctx, repo, "describe", "--tags", "--match", "v[0-9]*")
	if err != nil {
		return "0.0.0-dev"
	}
	v := strings.TrimPrefix(out, "v")
	if i := strings.Index(v, "-"); i >= 0 {
		v = v[:i+1] + strings.ReplaceAll(v[i+1:], "-", ".")
	}
	return v
}

// sourceDate is SOURCE_DATE_EPOCH (the reproducible-builds convention), else
// the HEAD commit's time, so a rebuild of one commit dates files alike.
func sourceDate(ctx context.Context, repo string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a Unix time", s)
		}
		return time.Unix(n, 0), nil
	}
	out, err := git(ctx, repo, "log", "-1", "--format=%ct")
	if err != nil {
		return time.Time{}, fmt.Errorf("no SOURCE_DATE_EPOCH and no git commit time (set SOURCE_DATE_EPOCH): %w", err)
	}
	n, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse commit time %q: %w", out, err)
	}
	return time.Unix(n, 0), nil
}

// git runs git in repo and returns its trimmed stdout.
func git(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...)
	cmd.Stderr = nil
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// FindRepo returns the nearest directory at or above dir that holds
// cmd/duo-confidential/main.go.
func FindRepo(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "cmd", Name, "main.go")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no cmd/%s/main.go at or above %s (pass -repo)", Name, dir)
		}
		d = parent
	}
}
