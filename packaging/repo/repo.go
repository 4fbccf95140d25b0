// Package repo publishes built packages as signed repositories: an apt
// repository (apt-ftparchive for the indexes, gpg for InRelease and
// Release.gpg), a dnf/yum repository (rpmsign for the packages, createrepo_c
// for repodata, gpg for repomd.xml.asc), the public key, the deb822 .sources
// and .repo files that point at them, and optionally one offline bundle of
// all of it for air-gapped sites. The formats and signatures come from those
// tools; this package only lays out the tree and runs them.
//
// The same packages, key and date give the same tree except for the
// signatures (InRelease, Release.gpg, repomd.xml.asc, each rpm's signature
// header) and what hashes a signed rpm (repodata).
package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Fixed names of the published tree.
const (
	Name        = "duo-confidential"
	Suite       = "stable"
	Component   = "main"
	AptDir      = "apt"
	RPMDir      = "rpm"
	KeyringFile = Name + ".gpg"     // binary public key: apt's Signed-By
	ArmoredKey  = Name + ".asc"     // armored public key: dnf's gpgkey=, and people
	SourcesFile = Name + ".sources" // deb822 apt source
	RepoFile    = Name + ".repo"    // dnf/yum repository
	// DefaultOfflineDir is where the offline bundle is unpacked on the
	// air-gapped machine; its .sources and .repo point there.
	DefaultOfflineDir = "/srv/" + Name + "-repo"
	// KeyringPath and SourcesPath are where the .sources file expects the
	// keyring and where it goes itself (docs/operations.md).
	KeyringPath = "/etc/apt/keyrings/" + KeyringFile
)

// AptArches are the Debian architectures every repository lists, with an
// empty index when no package of that architecture was given.
var AptArches = []string{"amd64", "arm64"}

// Options says what to publish and where.
type Options struct {
	Packages   []string  // .deb and .rpm files: every version the repository offers
	OutDir     string    // the published tree (replaced if it exists)
	URL        string    // where OutDir will be served, e.g. https://packages.example.com/duo-confidential
	Bundle     string    // path of the offline bundle (.tar) to write too; "" for none
	OfflineDir string    // where the bundle is unpacked; default DefaultOfflineDir
	Date       time.Time // Release date, file times, repodata revision; default now
}

// Build writes the signed repositories into OutDir (and the bundle).
func Build(ctx context.Context, s *Signer, o Options) error {
	if o.OutDir == "" || o.URL == "" {
		return errors.New("repository: output directory and URL are required")
	}
	o.URL = strings.TrimRight(o.URL, "/")
	if o.OfflineDir == "" {
		o.OfflineDir = DefaultOfflineDir
	}
	if !filepath.IsAbs(o.OfflineDir) {
		return fmt.Errorf("offline directory %q is not absolute", o.OfflineDir)
	}
	if o.Date.IsZero() {
		o.Date = time.Now()
	}
	o.Date = o.Date.UTC().Truncate(time.Second)
	debs, rpms, err := sortPackages(o.Packages)
	if err != nil {
		return err
	}
	out, err := filepath.Abs(o.OutDir)
	if err != nil {
		return fmt.Errorf("resolve output directory: %w", err)
	}
	if err := replaceable(out); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	if err := buildApt(ctx, s, filepath.Join(tmp, AptDir), debs, o.Date); err != nil {
		return fmt.Errorf("apt repository: %w", err)
	}
	if err := buildRPM(ctx, s, filepath.Join(tmp, RPMDir), rpms, o.Date); err != nil {
		return fmt.Errorf("dnf repository: %w", err)
	}
	if err := writeClientFiles(ctx, s, tmp, o.URL, o.Date); err != nil {
		return err
	}
	if o.Bundle != "" {
		if err := writeBundle(ctx, s, tmp, o); err != nil {
			return fmt.Errorf("offline bundle: %w", err)
		}
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("replace %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("move repository into place: %w", err)
	}
	return nil
}

// replaceable refuses an output directory that holds anything but an
// earlier publication (which has the .sources file at its top), so a
// mistyped -out never deletes someone's files.
func replaceable(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, SourcesFile)); err != nil {
		return fmt.Errorf("refusing to replace %s: not empty and not a repository this command wrote (no %s)", dir, SourcesFile)
	}
	return nil
}

// sortPackages splits the inputs by format, sorted by file name, and
// refuses anything else and two inputs with one name.
func sortPackages(paths []string) (debs, rpms []string, err error) {
	seen := map[string]string{}
	for _, p := range paths {
		base := filepath.Base(p)
		if prev, ok := seen[base]; ok {
			return nil, nil, fmt.Errorf("two packages named %s (%s, %s)", base, prev, p)
		}
		seen[base] = p
		switch filepath.Ext(base) {
		case ".deb":
			debs = append(debs, p)
		case ".rpm":
			rpms = append(rpms, p)
		default:
			return nil, nil, fmt.Errorf("%s is neither a .deb nor an .rpm", p)
		}
	}
	if len(debs) == 0 && len(rpms) == 0 {
		return nil, nil, errors.New("no packages to publish")
	}
	byName := func(s []string) {
		sort.Slice(s, func(i, j int) bool { return filepath.Base(s[i]) < filepath.Base(s[j]) })
	}
	byName(debs)
	byName(rpms)
	return debs, rpms, nil
}

// writeClientFiles writes the public key in both forms and the .sources and
// .repo files for url.
func writeClientFiles(ctx context.Context, s *Signer, dir, url string, date time.Time) error {
	for _, armor := range []bool{false, true} {
		key, err := s.PublicKey(ctx, armor)
		if err != nil {
			return err
		}
		name := KeyringFile
		if armor {
			name = ArmoredKey
		}
		if err := writeFile(filepath.Join(dir, name), key, date); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, SourcesFile), []byte(SourcesText(url+"/"+AptDir)), date); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, RepoFile), []byte(RepoText(url+"/"+RPMDir, url+"/"+ArmoredKey)), date)
}

// SourcesText is the deb822 apt source for the apt repository at uri.
func SourcesText(uri string) string {
	return "# duo-confidential: apt install duo-confidential\n" +
		"# The key is " + KeyringPath + ", from " + KeyringFile + " beside this file.\n" +
		"Types: deb\n" +
		"URIs: " + uri + "\n" +
		"Suites: " + Suite + "\n" +
		"Components: " + Component + "\n" +
		"Signed-By: " + KeyringPath + "\n"
}

// RepoText is the dnf/yum repository definition for the rpm repository at
// baseurl; both the packages and the metadata must carry the key's
// signature.
func RepoText(baseurl, keyurl string) string {
	return "[" + Name + "]\n" +
		"name=duo-confidential\n" +
		"baseurl=" + baseurl + "\n" +
		"enabled=1\n" +
		"gpgcheck=1\n" +
		"repo_gpgcheck=1\n" +
		"gpgkey=" + keyurl + "\n"
}

// copyFile copies src to dst with mode 0644 and the given time.
func copyFile(src, dst string, date time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return os.Chtimes(dst, date, date)
}

// writeFile writes data to path (mode 0644, directories made) dated date.
func writeFile(path string, data []byte, date time.Time) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Chtimes(path, date, date)
}
