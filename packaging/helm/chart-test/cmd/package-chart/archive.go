package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// rewriteArchive copies the gzipped tar chart archive at src to dst with
// everything that depends on when and by whom it was made taken out: each
// entry gets mtime, owner 0:0 without names and no access or change time,
// and the gzip header no time. Entry order, names, modes and contents, and
// Helm's gzip comment and extra field, stay as Helm wrote them.
func rewriteArchive(src, dst string, mtime time.Time) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read archive %s: %w", src, err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Header = zr.Header
	zw.ModTime = time.Time{}
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive %s: %w", src, err)
		}
		// Helm writes regular files only; anything else would need its own
		// rules, so it is refused rather than copied unchecked.
		if h.Typeflag != tar.TypeReg {
			return fmt.Errorf("archive %s: entry %s has type %q, want a regular file", src, h.Name, h.Typeflag)
		}
		fixed := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     h.Name,
			Mode:     h.Mode,
			Size:     h.Size,
			ModTime:  mtime.UTC(),
		}
		if err := tw.WriteHeader(fixed); err != nil {
			return fmt.Errorf("write %s: %w", h.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}
