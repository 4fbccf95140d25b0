// Package oci builds the duo-confidential container image without a
// container daemon: the static binary on an empty base with CA
// certificates, a non-root user, OCI annotations and an SPDX SBOM, written
// as an OCI archive (a tar of an OCI image layout, as `skopeo copy
// oci-archive:` and `podman load` read it). Every time in it is the build's
// fixed time and every list is sorted, so the same input gives the same
// digest.
package oci

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binary is the appliance binary built for one platform.
type Binary struct {
	Arch string // GOARCH: amd64 or arm64
	Path string // a static linux binary
}

// Options says what goes into the image.
type Options struct {
	Version        string    // image version, e.g. 1.2.3 (the tag and org.opencontainers.image.version)
	Created        time.Time // every time in the image; required (SOURCE_DATE_EPOCH or the commit time)
	Source         string    // source repository URL
	Revision       string    // VCS commit, if known
	Binaries       []Binary  // one per platform; more than one makes a multi-platform index
	CACerts        string    // PEM bundle of trusted roots; default /etc/ssl/certs/ca-certificates.crt
	CACertsVersion string    // version of Debian's ca-certificates the bundle is from; empty: unknown
	Config         string    // configuration shipped as /etc/duo-confidential/config.yaml
	License        string    // SPDX licence expression of the project
	Out            string    // the OCI archive to write
}

// Result is what Build wrote.
type Result struct {
	Path   string            // the OCI archive
	Digest v1.Hash           // digest of the image manifest (one platform) or the image index
	SBOMs  map[string][]byte // the SPDX JSON per arch (also inside the image at SBOMPath)
}

// Exposed ports: the proxy, the gateway, the admin UI and the Agent Platform.
var exposedPorts = []string{"8080/tcp", "5052/tcp", "5053/tcp", "50052/tcp"}

// Build writes the image for every binary into one OCI archive.
func Build(ctx context.Context, o Options) (Result, error) {
	if o.Created.IsZero() || o.Version == "" || o.Out == "" || len(o.Binaries) == 0 || o.Config == "" {
		return Result{}, errors.New("oci: Created, Version, Out, Config and at least one binary are required")
	}
	if o.CACerts == "" {
		o.CACerts = "/etc/ssl/certs/ca-certificates.crt"
	}
	res := Result{Path: o.Out, SBOMs: map[string][]byte{}}
	var images []mutate.IndexAddendum
	for _, b := range o.Binaries {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		img, sbom, err := image(o, b)
		if err != nil {
			return Result{}, fmt.Errorf("oci: image for %s: %w", b.Arch, err)
		}
		res.SBOMs[b.Arch] = sbom
		images = append(images, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: b.Arch},
		}})
	}
	stage, err := os.MkdirTemp("", "duo-confidential-oci-")
	if err != nil {
		return Result{}, fmt.Errorf("oci: staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	p, err := layout.Write(stage, empty.Index)
	if err != nil {
		return Result{}, fmt.Errorf("oci: layout: %w", err)
	}
	refAnn := annotations(o)
	refAnn["org.opencontainers.image.ref.name"] = RefName(o.Version)
	if len(images) == 1 {
		img := images[0].Add.(v1.Image)
		if err := p.WriteImage(img); err != nil {
			return Result{}, fmt.Errorf("oci: write image: %w", err)
		}
		// Our own descriptor: go-containerregistry's would add an
		// artifactType (the config's media type) that plain images omit.
		desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Annotations: refAnn, Platform: images[0].Descriptor.Platform}
		if desc.Digest, err = img.Digest(); err != nil {
			return Result{}, fmt.Errorf("oci: digest: %w", err)
		}
		if desc.Size, err = img.Size(); err != nil {
			return Result{}, fmt.Errorf("oci: size: %w", err)
		}
		if err := p.AppendDescriptor(desc); err != nil {
			return Result{}, fmt.Errorf("oci: write index: %w", err)
		}
		res.Digest = desc.Digest
	} else {
		idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, images...), types.OCIImageIndex)
		idx = mutate.Annotations(idx, annotations(o)).(v1.ImageIndex)
		if err := p.AppendIndex(idx, layout.WithAnnotations(refAnn)); err != nil {
			return Result{}, fmt.Errorf("oci: write index: %w", err)
		}
		if res.Digest, err = idx.Digest(); err != nil {
			return Result{}, fmt.Errorf("oci: digest: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return Result{}, fmt.Errorf("oci: output directory: %w", err)
	}
	if err := writeArchive(stage, o.Out, o.Created); err != nil {
		return Result{}, fmt.Errorf("oci: %w", err)
	}
	return res, nil
}

// image builds one platform's image and returns it with its SBOM.
func image(o Options, b Binary) (v1.Image, []byte, error) {
	if err := checkStatic(b.Path); err != nil {
		return nil, nil, err
	}
	if arch, err := elfArch(b.Path); err != nil {
		return nil, nil, err
	} else if arch != b.Arch {
		return nil, nil, fmt.Errorf("%s is built for %s, not %s", b.Path, arch, b.Arch)
	}
	bin, err := readFile("binary", b.Path)
	if err != nil {
		return nil, nil, err
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return nil, nil, fmt.Errorf("read Go build info of %s: %w", b.Path, err)
	}
	ca, err := readFile("CA certificates", o.CACerts)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := readFile("configuration", o.Config)
	if err != nil {
		return nil, nil, err
	}
	sbom, err := makeSBOM(bi, sbomInput{
		Version: o.Version, Arch: b.Arch, Source: o.Source, Created: o.Created,
		CACertsVersion: o.CACertsVersion, CACertsSHA256: sha256Hex(ca), BinarySHA256: sha256Hex(bin),
		License: o.License, BinaryPathInImage: BinaryPath,
	})
	if err != nil {
		return nil, nil, err
	}
	tarBytes, err := layerTar(rootFS(bin, ca, cfg, sbom), o.Created)
	if err != nil {
		return nil, nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, nil, fmt.Errorf("layer: %w", err)
	}
	labels := annotations(o)
	ports := map[string]struct{}{}
	for _, p := range exposedPorts {
		ports[p] = struct{}{}
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: b.Arch,
		OS:           "linux",
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:         fmt.Sprintf("%d:%d", UID, GID),
			Entrypoint:   []string{BinaryPath},
			Cmd:          []string{"serve", "--config", ConfigPath},
			Env:          []string{"PATH=/usr/bin", "SSL_CERT_FILE=" + CACertsPath},
			WorkingDir:   StateDir,
			ExposedPorts: ports,
			Labels:       labels,
			StopSignal:   "SIGTERM",
			Volumes:      map[string]struct{}{StateDir: {}},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "duo-confidential packaging/oci: static binary, CA certificates, non-root user " + userName,
			Comment:   "built without a container daemon (go-containerregistry)",
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("layer: %w", err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: o.Created})
	if err != nil {
		return nil, nil, fmt.Errorf("created time: %w", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img = mutate.Annotations(img, annotations(o)).(v1.Image)
	return img, sbom, nil
}

// annotations are the OCI pre-defined annotation keys (image-spec
// annotations.md), used as manifest annotations and as config labels.
func annotations(o Options) map[string]string {
	a := map[string]string{
		"org.opencontainers.image.created":       o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.version":       o.Version,
		"org.opencontainers.image.title":         "duo-confidential",
		"org.opencontainers.image.description":   "GitLab Duo on attested confidential computing: AI Gateway, Agent Platform and Privatemode proxy in one static binary",
		"org.opencontainers.image.documentation": strings.TrimSuffix(o.Source, "/") + "/blob/main/docs/operations.md",
	}
	if o.Source != "" {
		a["org.opencontainers.image.source"] = o.Source
		a["org.opencontainers.image.url"] = o.Source
	} else {
		delete(a, "org.opencontainers.image.documentation")
	}
	if o.Revision != "" {
		a["org.opencontainers.image.revision"] = o.Revision
	}
	if o.License != "" {
		a["org.opencontainers.image.licenses"] = o.License
	}
	return a
}

// RefName is the image's name in the archive's index
// (org.opencontainers.image.ref.name): `podman load` names the image
// localhost/duo-confidential:VERSION after it, and `skopeo copy
// oci-archive:FILE:duo-confidential:VERSION` selects it.
func RefName(version string) string { return "duo-confidential:" + version }
