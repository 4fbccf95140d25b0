package build_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Two publications of the same packages with the same key and date are
// identical except for the signatures and what a signature changes: the
// clear-signed and detached signatures, each rpm's signature header (the
// rest of the rpm is the input package, byte for byte) and the repodata
// checksums of the signed rpms. Both publications verify with gpgv.
func TestRepositoryReproducible(t *testing.T) {
	b := packages(t)
	key, _ := releaseKeys(t)
	s := signer(t, key)
	dir := t.TempDir()
	pkgs := []string{b.v1["deb"], b.v1["rpm"], b.v2["deb"], b.v2["rpm"]}
	x, y := filepath.Join(dir, "x"), filepath.Join(dir, "y")
	publish(t, s, x, docURL, filepath.Join(dir, "x.tar"), pkgs...)
	publish(t, s, y, docURL, filepath.Join(dir, "y.tar"), pkgs...)

	signatures := map[string]bool{
		"apt/dists/stable/InRelease":   true,
		"apt/dists/stable/Release.gpg": true,
		"rpm/repodata/repomd.xml.asc":  true,
	}
	// repodata's file names start with their checksum: pair them by type.
	xs, ys := listFiles(t, x), listFiles(t, y)
	for _, l := range [][]string{xs, ys} {
		keys := byType(l)
		sort.Sort(pairs{keys, l})
	}
	if a, c := strings.Join(byType(xs), "\n"), strings.Join(byType(ys), "\n"); a != c {
		t.Fatalf("file lists differ:\n%v\n%v", a, c)
	}
	for _, want := range []string{
		"apt/dists/stable/Release", "apt/dists/stable/main/binary-amd64/Packages.xz",
		"apt/dists/stable/main/binary-arm64/Packages.gz", "apt/pool/main/d/duo-confidential/" + filepath.Base(b.v2["deb"]),
		"rpm/packages/" + filepath.Base(b.v2["rpm"]), "rpm/repodata/repomd.xml", "duo-confidential.gpg",
		"duo-confidential.asc", "duo-confidential.sources", "duo-confidential.repo",
	} {
		if !contains(xs, want) {
			t.Errorf("published tree lacks %s", want)
		}
	}
	pkgid := regexp.MustCompile(`pkgid="[0-9a-f]+"|<checksum type="sha256" pkgid="YES">[0-9a-f]+</checksum>`)
	for i, rel := range xs {
		a, c := readFile(t, filepath.Join(x, rel)), readFile(t, filepath.Join(y, ys[i]))
		switch {
		case signatures[rel]:
			// Differ at most in the signature; both must verify.
			for _, d := range []string{x, y} {
				verifyDetached(t, d, rel)
			}
		case strings.HasPrefix(rel, "rpm/packages/"):
			for _, d := range []string{x, y} {
				unsigned := filepath.Join(t.TempDir(), filepath.Base(rel))
				run(t, "cp", filepath.Join(d, rel), unsigned)
				run(t, "rpmsign", "--delsign", unsigned)
				input := b.v1["rpm"]
				if strings.Contains(rel, "1.2.3") {
					input = b.v2["rpm"]
				}
				if readFile(t, unsigned) != readFile(t, input) {
					t.Errorf("%s without its signature differs from the built package", rel)
				}
			}
		case strings.HasPrefix(rel, "rpm/repodata/") && strings.HasSuffix(rel, ".xml.gz"):
			ax, cx := pkgid.ReplaceAllString(gunzip(t, a), "PKGID"), pkgid.ReplaceAllString(gunzip(t, c), "PKGID")
			if ax != cx {
				t.Errorf("%s differs beyond the packages' checksums", rel)
			}
		case rel == "rpm/repodata/repomd.xml":
			// Holds the checksums of the files above; compared through them.
		default:
			if a != c {
				t.Errorf("%s differs between two publications", rel)
			}
		}
	}
}

// verifyDetached checks a signature file of the published tree at d with
// gpgv and the published keyring.
func verifyDetached(t *testing.T, d, rel string) {
	t.Helper()
	keyring := filepath.Join(d, "duo-confidential.gpg")
	args := []string{"--keyring", keyring, filepath.Join(d, rel)}
	switch {
	case strings.HasSuffix(rel, "/InRelease"):
	case strings.HasSuffix(rel, ".gpg"):
		args = append(args, filepath.Join(d, strings.TrimSuffix(rel, ".gpg")))
	case strings.HasSuffix(rel, ".asc"):
		args = append(args, filepath.Join(d, strings.TrimSuffix(rel, ".asc")))
	}
	run(t, "gpgv", args...)
}

// byType maps repodata's checksum-named files to their type, so two
// listings sort alike.
func byType(names []string) []string {
	hashed := regexp.MustCompile(`^rpm/repodata/[0-9a-f]{64}-`)
	var out []string
	for _, n := range names {
		out = append(out, hashed.ReplaceAllString(n, "rpm/repodata/"))
	}
	return out
}

// pairs sorts names by their keys.
type pairs struct{ keys, names []string }

func (p pairs) Len() int           { return len(p.keys) }
func (p pairs) Less(i, j int) bool { return p.keys[i] < p.keys[j] }
func (p pairs) Swap(i, j int) {
	p.keys[i], p.keys[j] = p.keys[j], p.keys[i]
	p.names[i], p.names[j] = p.names[j], p.names[i]
}

// listFiles lists the regular files under dir, relative, sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// gunzip decompresses a gzip'd string.
func gunzip(t *testing.T, s string) string {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader([]byte(s)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
