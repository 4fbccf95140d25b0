package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
)

var chartDir = filepath.Join("..", "..", "..", "duo-confidential")

// Packaging the same chart and version twice gives the same bytes, every
// entry dated the given time and owned by no one, and the archive is still
// the chart: Helm's loader reads back the same metadata, templates and values.
func TestPackageChartReproducible(t *testing.T) {
	mtime := time.Unix(1700000000, 0)
	first, err := packageChart(chartDir, t.TempDir(), "1.2.3", mtime)
	if err != nil {
		t.Fatal(err)
	}
	second, err := packageChart(chartDir, t.TempDir(), "1.2.3", mtime)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(first) != "duo-confidential-1.2.3.tgz" {
		t.Errorf("archive named %s, want duo-confidential-1.2.3.tgz", filepath.Base(first))
	}
	a, b := readFile(t, first), readFile(t, second)
	if !bytes.Equal(a, b) {
		t.Fatal("two packagings of the same chart and version differ")
	}

	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Comment != "Helm" {
		t.Errorf("gzip header time %v comment %q, want none and Helm's", zr.ModTime, zr.Comment)
	}
	entries := 0
	for tr := tar.NewReader(zr); ; entries++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(mtime) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.Mode != 0o644 {
			t.Errorf("%s: time %v owner %d:%d (%q:%q) mode %o, want %v 0:0 unnamed 644",
				h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname, h.Mode, mtime)
		}
	}
	if entries == 0 {
		t.Fatal("empty archive")
	}

	src, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loader.Load(first)
	if err != nil {
		t.Fatalf("Helm cannot load the archive: %v", err)
	}
	want := *src.Metadata
	want.Version, want.AppVersion = "1.2.3", "1.2.3"
	if !reflect.DeepEqual(*got.Metadata, want) {
		t.Errorf("metadata %+v\nwant     %+v", *got.Metadata, want)
	}
	if !reflect.DeepEqual(got.Templates, src.Templates) {
		t.Error("templates differ from the chart directory's")
	}
	if !reflect.DeepEqual(got.Values, src.Values) {
		t.Error("values differ from the chart directory's")
	}

	later, err := packageChart(chartDir, t.TempDir(), "1.2.3", mtime.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, readFile(t, later)) {
		t.Error("another -mtime gives the same bytes: the time is not taken from it")
	}
}

// Two archives Helm could have written at different times, by different
// users, become the same bytes; what the chart holds is kept.
func TestRewriteArchiveReproducible(t *testing.T) {
	dir := t.TempDir()
	files := []struct{ name, body string }{
		{"duo-confidential/Chart.yaml", "name: duo-confidential\n"},
		{"duo-confidential/templates/a.yaml", "kind: ConfigMap\n"},
	}
	write := func(name string, made time.Time, uid int, uname string) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Comment, zw.ModTime = "Helm", made
		tw := tar.NewWriter(zw)
		for _, f := range files {
			h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: made,
				Uid: uid, Gid: uid, Uname: uname, Gname: uname, Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tw, f.body); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	early := write("early.tgz", time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), 0, "")
	late := write("late.tgz", time.Date(2026, 12, 6, 22, 0, 1, 0, time.UTC), 1000, "builder")
	if bytes.Equal(readFile(t, early), readFile(t, late)) {
		t.Fatal("the test's two inputs are already the same")
	}
	mtime := time.Unix(1700000000, 0)
	for _, p := range []string{early, late} {
		if err := rewriteArchive(p, p+".out", mtime); err != nil {
			t.Fatal(err)
		}
	}
	out := readFile(t, early+".out")
	if !bytes.Equal(out, readFile(t, late+".out")) {
		t.Fatal("archives made at other times by other users still differ after the rewrite")
	}
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for _, f := range files {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != f.name || string(body) != f.body || !h.ModTime.Equal(mtime) {
			t.Errorf("entry %s (%v) %q, want %s (%v) %q", h.Name, h.ModTime, body, f.name, mtime, f.body)
		}
	}
}

// A link or directory entry is not what Helm writes: refused, not copied.
func TestRewriteArchiveRefusesOtherEntries(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "duo-confidential/x", Linkname: "/etc/passwd"}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	zw.Close()
	src := filepath.Join(t.TempDir(), "in.tgz")
	if err := os.WriteFile(src, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewriteArchive(src, src+".out", time.Unix(1, 0)); err == nil {
		t.Fatal("a symlink entry was copied")
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
