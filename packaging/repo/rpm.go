package repo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RPMPackagesDir is where the signed rpms go inside the dnf repository.
const RPMPackagesDir = "packages"

// buildRPM copies the rpms, signs each with rpmsign, writes repodata with
// createrepo_c and signs repomd.xml.
func buildRPM(ctx context.Context, s *Signer, dir string, rpms []string, date time.Time) error {
	var signed []string
	for _, r := range rpms {
		dst := filepath.Join(dir, RPMPackagesDir, filepath.Base(r))
		if err := copyFile(r, dst, date); err != nil {
			return err
		}
		signed = append(signed, dst)
	}
	if err := os.MkdirAll(filepath.Join(dir, RPMPackagesDir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", RPMPackagesDir, err)
	}
	if err := s.SignRPMs(ctx, signed); err != nil {
		return err
	}
	for _, p := range signed {
		// createrepo_c records each file's time; rpmsign just rewrote them.
		if err := os.Chtimes(p, date, date); err != nil {
			return fmt.Errorf("date %s: %w", p, err)
		}
	}
	rev := strconv.FormatInt(date.Unix(), 10)
	cmd := exec.CommandContext(ctx, "createrepo_c",
		"--revision", rev, "--set-timestamp-to-revision",
		// gzip'd XML is what every dnf and yum reads; the sqlite databases
		// only speed up old yum and are not reproducible.
		"--general-compress-type", "gz", "--no-database",
		"--workers", "1", "--quiet", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("createrepo_c: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	repomd := filepath.Join(dir, "repodata", "repomd.xml")
	return s.DetachSign(ctx, repomd, repomd+".asc")
}
