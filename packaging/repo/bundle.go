package repo

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

// Names inside the offline bundle, beside the repositories.
const (
	BundleReadme    = "README.txt"
	BundleChecksums = "SHA256SUMS"
)

//go:embed bundle-README.txt
var bundleReadme string

// writeBundle writes the offline bundle: one tar whose top directory is
// the base name of OfflineDir, holding the repositories and public key of
// tree, .sources and .repo files that point at OfflineDir with file: URLs,
// a README, and SHA256SUMS (signed) over everything else.
func writeBundle(ctx context.Context, s *Signer, tree string, o Options) error {
	stage, err := os.MkdirTemp("", "duo-bundle-")
	if err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	top := filepath.Base(o.OfflineDir)
	files := map[string][]byte{ // name in the bundle -> contents, for the generated files
		SourcesFile: []byte(SourcesText("file:" + o.OfflineDir + "/" + AptDir)),
		RepoFile:    []byte(RepoText("file://"+o.OfflineDir+"/"+RPMDir, "file://"+o.OfflineDir+"/"+ArmoredKey)),
	}
	var readme bytes.Buffer
	err = template.Must(template.New("readme").Parse(bundleReadme)).Execute(&readme, map[string]string{
		"Dir": o.OfflineDir, "Parent": filepath.Dir(o.OfflineDir), "Fingerprint": s.Fingerprint(),
		"Keyring": KeyringFile, "KeyringPath": KeyringPath, "Sources": SourcesFile, "Repo": RepoFile,
	})
	if err != nil {
		return fmt.Errorf("README: %w", err)
	}
	files[BundleReadme] = readme.Bytes()

	// Every regular file of the tree except the online .sources and .repo.
	var names []string
	err = filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(tree, path)
		if err != nil {
			return err
		}
		if rel == SourcesFile || rel == RepoFile {
			return nil
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("list repository: %w", err)
	}
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)

	read := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return os.ReadFile(filepath.Join(tree, filepath.FromSlash(name)))
	}
	var sums strings.Builder
	for _, name := range names {
		b, err := read(name)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), name)
	}
	sumsPath := filepath.Join(stage, BundleChecksums)
	if err := os.WriteFile(sumsPath, []byte(sums.String()), 0o644); err != nil {
		return fmt.Errorf("write checksums: %w", err)
	}
	if err := s.DetachSign(ctx, sumsPath, sumsPath+".asc"); err != nil {
		return err
	}
	for _, n := range []string{BundleChecksums, BundleChecksums + ".asc"} {
		b, err := os.ReadFile(filepath.Join(stage, n))
		if err != nil {
			return err
		}
		files[n] = b
		names = append(names, n)
	}
	sort.Strings(names)
	return writeTar(o, top, names, read)
}

// writeTar writes the bundle with fixed owners, modes and times, in name
// order, so the same files give the same archive.
func writeTar(o Options, top string, names []string, read func(string) ([]byte, error)) error {
	if err := os.MkdirAll(filepath.Dir(o.Bundle), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(o.Bundle), err)
	}
	tmp := o.Bundle + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	header := func(name string, dir bool, size int64) *tar.Header {
		h := &tar.Header{Name: top + "/" + name, ModTime: o.Date, Uname: "root", Gname: "root",
			Format: tar.FormatPAX, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
		if dir {
			h.Name, h.Typeflag, h.Mode, h.Size = strings.TrimSuffix(h.Name, "/")+"/", tar.TypeDir, 0o755, 0
		}
		return h
	}
	dirs := map[string]bool{}
	var mkdirs func(string) error
	mkdirs = func(dir string) error {
		if dir == "." || dirs[dir] {
			return nil
		}
		if err := mkdirs(filepath.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(header(dir, true, 0))
	}
	if err := tw.WriteHeader(header("", true, 0)); err != nil {
		f.Close()
		return fmt.Errorf("write bundle: %w", err)
	}
	for _, name := range names {
		b, err := read(name)
		if err != nil {
			f.Close()
			return err
		}
		if err := mkdirs(filepath.Dir(name)); err != nil {
			f.Close()
			return fmt.Errorf("write bundle: %w", err)
		}
		if err := tw.WriteHeader(header(name, false, int64(len(b)))); err != nil {
			f.Close()
			return fmt.Errorf("write bundle: %w", err)
		}
		if _, err := io.Copy(tw, bytes.NewReader(b)); err != nil {
			f.Close()
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write bundle: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return os.Rename(tmp, o.Bundle)
}
