package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileAtomicModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "keys")
	p := filepath.Join(dir, "signing.pem")
	if err := WriteFile(p, []byte("one"), SecretMode); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), SecretMode); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("ReadFile = %q, %v; want two", got, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != SecretMode {
		t.Errorf("file mode %v, want %v", fi.Mode().Perm(), SecretMode)
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != DirMode {
		t.Errorf("dir mode %v, want %v", di.Mode().Perm(), DirMode)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temp files left)", len(entries))
	}
}

func TestEnsureDirTightensMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "loose")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != DirMode {
		t.Errorf("dir mode %v, want %v", di.Mode().Perm(), DirMode)
	}
}

func TestReadFileMissing(t *testing.T) {
	b, err := ReadFile(filepath.Join(t.TempDir(), "nope"))
	if b != nil || err != nil {
		t.Fatalf("ReadFile(missing) = %q, %v; want nil, nil", b, err)
	}
}

func TestEnsureDirOnFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(f); err == nil {
		t.Fatal("EnsureDir on a regular file succeeded")
	}
}

func TestCheckWritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := CheckWritable(dir); err != nil {
		t.Fatalf("new directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the check left %d files behind", len(entries))
	}
	if os.Geteuid() == 0 {
		t.Skip("root writes through directory modes; the read-only case runs in cmd/duo-confidential with a read-only bind mount")
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	err := CheckWritable(dir)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("read-only directory: %v", err)
	}
}
