package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// created is the fixed build time of the tests' images.
var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// staticBinary builds testdata/static for GOARCH amd64 (static, with Go
// build info).
func staticBinary(t *testing.T) string {
	t.Helper()
	return staticBinaryFor(t, "amd64")
}

// staticBinaryFor builds testdata/static for arch.
func staticBinaryFor(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "duo-confidential")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/static")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test binary: %v\n%s", err, out)
	}
	return bin
}

// testCAs writes a PEM bundle of one self-made certificate (the tests must
// not depend on the host's bundle).
func testCAs(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: created, NotAfter: created.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func options(t *testing.T, bin, ca, out string) Options {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("state_dir: /var/lib/duo-confidential\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{
		Version: "1.2.3", Created: created, Source: "https://example.test/duo", Revision: "abc123",
		Binaries: []Binary{{Arch: "amd64", Path: bin}}, CACerts: ca, CACertsVersion: "20230311+deb12u1",
		Config: cfg, License: "LicenseRef-test", Out: out,
	}
}

func TestReproducible(t *testing.T) {
	bin, ca := staticBinary(t), testCAs(t)
	a, b := filepath.Join(t.TempDir(), "a.oci.tar"), filepath.Join(t.TempDir(), "b.oci.tar")
	ra, err := Build(context.Background(), options(t, bin, ca, a))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Build(context.Background(), options(t, bin, ca, b))
	if err != nil {
		t.Fatal(err)
	}
	if ra.Digest != rb.Digest {
		t.Errorf("digests differ: %s vs %s", ra.Digest, rb.Digest)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ba, bb) {
		t.Errorf("archives differ (%d vs %d bytes)", len(ba), len(bb))
	}
	// A different time is a different image: the time is really in it.
	o := options(t, bin, ca, filepath.Join(t.TempDir(), "c.oci.tar"))
	o.Created = created.Add(time.Second)
	rc, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Digest == ra.Digest {
		t.Error("a different build time gave the same digest")
	}
}

// unpack extracts an OCI archive and opens its layout.
func unpack(t *testing.T, archive string) layout.Path {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(created) || h.Uid != 0 || h.Uname != "" {
			t.Errorf("archive entry %s: time %s uid %d uname %q, want the build time and no owner", h.Name, h.ModTime, h.Uid, h.Uname)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImage(t *testing.T) {
	bin, ca := staticBinary(t), testCAs(t)
	out := filepath.Join(t.TempDir(), "img.oci.tar")
	res, err := Build(context.Background(), options(t, bin, ca, out))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := unpack(t, out).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(im.Manifests))
	}
	d := im.Manifests[0]
	if d.Digest != res.Digest || d.MediaType != types.OCIManifestSchema1 || d.ArtifactType != "" {
		t.Errorf("index entry %+v, want an OCI manifest %s without artifactType", d, res.Digest)
	}
	if d.Annotations["org.opencontainers.image.ref.name"] != "duo-confidential:1.2.3" || d.Platform == nil || d.Platform.Architecture != "amd64" {
		t.Errorf("index entry annotations %v platform %v", d.Annotations, d.Platform)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest media types: config %s, layers %v", m.Config.MediaType, m.Layers)
	}
	wantAnn := map[string]string{
		"org.opencontainers.image.version":  "1.2.3",
		"org.opencontainers.image.created":  "2026-01-02T03:04:05Z",
		"org.opencontainers.image.source":   "https://example.test/duo",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.licenses": "LicenseRef-test",
		"org.opencontainers.image.title":    "duo-confidential",
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range wantAnn {
		if m.Annotations[k] != v || cf.Config.Labels[k] != v {
			t.Errorf("%s: annotation %q label %q, want %q", k, m.Annotations[k], cf.Config.Labels[k], v)
		}
	}
	if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != BinaryPath || !cf.Created.Equal(created) ||
		cf.OS != "linux" || cf.Architecture != "amd64" || cf.RootFS.Type != "layers" || cf.Config.StopSignal != "SIGTERM" {
		t.Errorf("config: %+v", cf)
	}
	if len(cf.History) != 1 || !cf.History[0].Created.Equal(created) {
		t.Errorf("history %+v", cf.History)
	}
	files := layerFiles(t, img)
	type want struct {
		mode     int64
		uid, gid int
	}
	for p, w := range map[string]want{
		"usr/bin/duo-confidential":                      {0o755, 0, 0},
		"etc/ssl/certs/ca-certificates.crt":             {0o644, 0, 0},
		"etc/passwd":                                    {0o644, 0, 0},
		"etc/duo-confidential/config.yaml":              {0o640, 0, GID},
		"var/lib/duo-confidential/":                     {0o700, UID, GID},
		"tmp/":                                          {0o1777, 0, 0},
		"usr/share/doc/duo-confidential/sbom.spdx.json": {0o644, 0, 0},
	} {
		h, ok := files[p]
		if !ok {
			t.Errorf("%s missing from the layer", p)
			continue
		}
		if h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid || !h.ModTime.Equal(created) {
			t.Errorf("%s: mode %o uid %d gid %d time %s, want %o %d %d %s", p, h.Mode, h.Uid, h.Gid, h.ModTime, w.mode, w.uid, w.gid, created)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].body), "duo-confidential:x:65532:65532:") {
		t.Errorf("passwd lacks the service user:\n%s", files["etc/passwd"].body)
	}
	binBytes, _ := os.ReadFile(bin)
	if !bytes.Equal(files["usr/bin/duo-confidential"].body, binBytes) {
		t.Error("the image's binary is not the one given")
	}
	block, _ := pem.Decode(files["etc/ssl/certs/ca-certificates.crt"].body)
	if block == nil {
		t.Fatal("no PEM in the CA bundle")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Errorf("CA bundle: %v", err)
	}
	if !bytes.Equal(files["usr/share/doc/duo-confidential/sbom.spdx.json"].body, res.SBOMs["amd64"]) {
		t.Error("the SBOM in the image differs from the one returned")
	}
}

type layerFile struct {
	*tar.Header
	body []byte
}

func layerFiles(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %v (%d)", err, len(ls))
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]layerFile{}
	tr := tar.NewReader(rc)
	prev := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name <= prev {
			t.Errorf("layer not sorted: %s after %s", h.Name, prev)
		}
		prev = h.Name
		b, _ := io.ReadAll(tr)
		out[h.Name] = layerFile{h, b}
	}
}

func TestSBOM(t *testing.T) {
	bin, ca := staticBinary(t), testCAs(t)
	res, err := Build(context.Background(), options(t, bin, ca, filepath.Join(t.TempDir(), "x.oci.tar")))
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDocument
	dec := json.NewDecoder(bytes.NewReader(res.SBOMs["amd64"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.CreationInfo.Created != "2026-01-02T03:04:05Z" {
		t.Errorf("header %+v", doc)
	}
	refs := map[string]string{}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		if ids[p.SPDXID] {
			t.Errorf("duplicate SPDXID %s", p.SPDXID)
		}
		ids[p.SPDXID] = true
		for _, r := range p.ExternalRefs {
			refs[p.Name] = r.ReferenceLocator
		}
	}
	// The test binary's build info: the packaging module and its Go version.
	if !strings.HasPrefix(refs["stdlib"], "pkg:golang/stdlib@"+runtime.Version()) {
		t.Errorf("stdlib purl %q, want the toolchain %s", refs["stdlib"], runtime.Version())
	}
	if refs["ca-certificates"] != "pkg:deb/debian/ca-certificates@20230311+deb12u1" {
		t.Errorf("ca-certificates purl %q", refs["ca-certificates"])
	}
	if refs["github.com/duo-confidential/duo-confidential/packaging"] != "pkg:golang/github.com/duo-confidential/duo-confidential/packaging@v1.2.3" {
		t.Errorf("main purl: %v", refs)
	}
	for _, r := range doc.Relationships {
		if !ids[r.Element] && r.Element != "SPDXRef-DOCUMENT" || !ids[r.Related] {
			t.Errorf("relationship %+v names an unknown element", r)
		}
	}
}

func TestRefusesWrongBinaries(t *testing.T) {
	bin, ca := staticBinary(t), testCAs(t)
	for name, mod := range map[string]func(*Options){
		"wrong arch":  func(o *Options) { o.Binaries[0].Arch = "arm64" },
		"not ELF":     func(o *Options) { o.Binaries[0].Path = o.Config },
		"no time":     func(o *Options) { o.Created = time.Time{} },
		"missing CAs": func(o *Options) { o.CACerts = "/nonexistent/ca.pem" },
	} {
		t.Run(name, func(t *testing.T) {
			o := options(t, bin, ca, filepath.Join(t.TempDir(), "x.oci.tar"))
			mod(&o)
			if _, err := Build(context.Background(), o); err == nil {
				t.Error("built anyway")
			}
		})
	}
	// A dynamically linked binary (the test binary itself, if it is one;
	// any binary with PT_INTERP) is refused: the image has no libc.
	if _, err := os.Stat("/bin/true"); err == nil {
		if err := checkStatic("/bin/true"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("checkStatic(/bin/true) = %v, want dynamically linked", err)
		}
	}
}

// TestMultiPlatformIndex: with binaries for amd64 and arm64 the archive's
// index names one image index (ref.name) holding one image per platform,
// each with its own SBOM.
func TestMultiPlatformIndex(t *testing.T) {
	ca := testCAs(t)
	o := options(t, staticBinaryFor(t, "amd64"), ca, filepath.Join(t.TempDir(), "multi.oci.tar"))
	o.Binaries = append(o.Binaries, Binary{Arch: "arm64", Path: staticBinaryFor(t, "arm64")})
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	top, err := unpack(t, o.Out).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, _ := top.IndexManifest()
	if len(tm.Manifests) != 1 || tm.Manifests[0].MediaType != types.OCIImageIndex || tm.Manifests[0].Digest != res.Digest ||
		tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "duo-confidential:1.2.3" {
		t.Fatalf("top index: %+v", tm.Manifests)
	}
	idx, err := top.ImageIndex(res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	arches := map[string]bool{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if d.Platform == nil || d.Platform.Architecture != cf.Architecture || d.Platform.OS != "linux" {
			t.Errorf("descriptor platform %+v, config says %s", d.Platform, cf.Architecture)
		}
		arches[cf.Architecture] = true
	}
	if !arches["amd64"] || !arches["arm64"] || len(im.Manifests) != 2 {
		t.Errorf("platforms %v, want amd64 and arm64", arches)
	}
	if len(res.SBOMs["arm64"]) == 0 || string(res.SBOMs["arm64"]) == string(res.SBOMs["amd64"]) {
		t.Error("want a separate SBOM per platform")
	}
}
