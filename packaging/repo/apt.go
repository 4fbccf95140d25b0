package repo

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// buildApt lays out pool/ and dists/, writes the indexes with
// apt-ftparchive and signs the Release file.
func buildApt(ctx context.Context, s *Signer, dir string, debs []string, date time.Time) error {
	pool := filepath.Join("pool", Component, Name[:1], Name)
	for _, d := range debs {
		if err := copyFile(d, filepath.Join(dir, pool, filepath.Base(d)), date); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "pool", Component), 0o755); err != nil {
		return fmt.Errorf("create pool: %w", err)
	}
	dist := filepath.Join(dir, "dists", Suite)
	for _, arch := range AptArches {
		// Only SHA256 and SHA512: MD5 and SHA1 protect nothing any more.
		packages, err := ftparchive(ctx, dir, "--arch", arch, "packages", filepath.Join("pool", Component))
		if err != nil {
			return err
		}
		bin := filepath.Join(dist, Component, "binary-"+arch)
		if err := writeIndex(ctx, filepath.Join(bin, "Packages"), packages, date); err != nil {
			return err
		}
	}
	release, err := ftparchive(ctx, dist,
		"-o", "APT::FTPArchive::Release::Origin="+Name,
		"-o", "APT::FTPArchive::Release::Label="+Name,
		"-o", "APT::FTPArchive::Release::Suite="+Suite,
		"-o", "APT::FTPArchive::Release::Codename="+Suite,
		"-o", "APT::FTPArchive::Release::Architectures="+strings.Join(AptArches, " "),
		"-o", "APT::FTPArchive::Release::Components="+Component,
		"-o", "APT::FTPArchive::Release::Description=duo-confidential packages",
		"-o", "APT::FTPArchive::Release::Date="+date.Format(time.RFC1123Z),
		"release", ".")
	if err != nil {
		return err
	}
	rel := filepath.Join(dist, "Release")
	if err := writeFile(rel, release, date); err != nil {
		return err
	}
	if err := s.ClearSign(ctx, rel, filepath.Join(dist, "InRelease")); err != nil {
		return err
	}
	return s.DetachSign(ctx, rel, filepath.Join(dist, "Release.gpg"))
}

// ftparchive runs apt-ftparchive in dir and returns its output.
func ftparchive(ctx context.Context, dir string, args ...string) ([]byte, error) {
	args = append([]string{"-o", "APT::FTPArchive::MD5=false", "-o", "APT::FTPArchive::SHA1=false"}, args...)
	cmd := exec.CommandContext(ctx, "apt-ftparchive", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("apt-ftparchive %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	// apt-ftparchive reports problems with a package (say, an unreadable
	// control file) as warnings and leaves the package out.
	if w := strings.TrimSpace(stderr.String()); w != "" {
		return nil, fmt.Errorf("apt-ftparchive %s: %s", strings.Join(args, " "), w)
	}
	return stdout.Bytes(), nil
}

// writeIndex writes an index plain, gzip'd and xz'd, each reproducibly (no
// name or time in the gzip header; single-threaded xz).
func writeIndex(ctx context.Context, path string, data []byte, date time.Time) error {
	if err := writeFile(path, data, date); err != nil {
		return err
	}
	var gz bytes.Buffer
	w, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip %s: %w", path, err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("gzip %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("gzip %s: %w", path, err)
	}
	if err := writeFile(path+".gz", gz.Bytes(), date); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "xz", "--threads=1", "-9", "--stdout", "--", path)
	var xz, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &xz, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xz %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return writeFile(path+".xz", xz.Bytes(), date)
}
