// Package statedir owns the appliance's state directory: it creates it with
// safe modes and writes every file in it atomically, so a crash never leaves a
// half-written key, cache or trust log behind.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File modes used in the state directory.
const (
	DirMode    fs.FileMode = 0o700 // every directory
	SecretMode fs.FileMode = 0o600 // keys, tokens, anything secret
	PublicMode fs.FileMode = 0o644 // certificates, exported bundles
)

// EnsureDir creates dir (and parents) with mode 0700 and tightens an
// existing directory that is more permissive.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat state directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("restrict state directory %s to 0700: %w", dir, err)
		}
	}
	return nil
}

// WriteFile atomically replaces path with data at mode perm: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory. Readers see either the old or the new content.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := EnsureDir(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: set mode: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: rename: %w", path, err)
	}
	return syncDir(dir)
}

// ReadFile reads path; a missing file yields (nil, nil) so callers can treat
// "not yet written" as empty state.
func ReadFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// CheckWritable creates dir like EnsureDir and proves it can be written, by
// creating and removing a temporary file, so a read-only or full state
// directory stops the start with its name instead of failing the first
// attestation that cannot be recorded.
func CheckWritable(dir string) error {
	if err := EnsureDir(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("state directory %s is not writable (the trust log, keys and certificates live there): %w", dir, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("x"))
	cerr := f.Close()
	_ = os.Remove(name)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("state directory %s is not writable (the trust log, keys and certificates live there): %w", dir, err)
	}
	return nil
}
