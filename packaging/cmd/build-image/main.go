// Command build-image builds the duo-confidential OCI image into dist/
// without a container daemon, reproducibly: the same static binary the
// packages ship, on an empty base, as an OCI archive plus its SPDX SBOM.
//
//	go run -C packaging ./cmd/build-image                    # dist/duo-confidential-<version>.oci.tar
//	go run -C packaging ./cmd/build-image -arch amd64,arm64  # one archive, a multi-platform index
//
// Load it with `skopeo copy oci-archive:dist/duo-confidential-1.2.3.oci.tar
// docker://registry.example/duo-confidential:1.2.3` or `podman load -i`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/duo-confidential/duo-confidential/packaging/build"
	"github.com/duo-confidential/duo-confidential/packaging/oci"
)

// source is the project's repository, named in the image's annotations.
const source = "https://github.com/duo-confidential/duo-confidential"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
}

func run() error {
	shared := build.DefineFlags(flag.CommandLine, build.FlagHelp{
		Version: "image version, e.g. 1.2.3",
		MTime:   "Unix time of everything in the image",
	})
	caCerts := flag.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates to ship")
	flag.Parse()
	o, err := shared.Options(flag.CommandLine)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err = build.Resolved(ctx, o)
	if err != nil {
		return err
	}
	stage, err := os.MkdirTemp("", "duo-confidential-image-")
	if err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	io := oci.Options{
		Version:        o.Version,
		Created:        o.MTime,
		Source:         source,
		Revision:       gitOutput(ctx, o.Repo, "rev-parse", "HEAD"),
		CACerts:        *caCerts,
		CACertsVersion: debVersion(ctx, "ca-certificates"),
		Config:         build.ExampleConfig(o.Repo),
		License:        "LicenseRef-duo-confidential",
		Out:            filepath.Join(o.OutDir, build.Name+"-"+o.Version+".oci.tar"),
	}
	for _, arch := range o.Arches {
		bin, err := build.CompileBinary(ctx, o, arch, filepath.Join(stage, arch))
		if err != nil {
			return err
		}
		io.Binaries = append(io.Binaries, oci.Binary{Arch: arch, Path: bin})
	}
	res, err := oci.Build(ctx, io)
	if err != nil {
		return err
	}
	for _, arch := range o.Arches {
		p := filepath.Join(o.OutDir, build.Name+"-"+o.Version+"-"+arch+".spdx.json")
		if err := os.WriteFile(p, res.SBOMs[arch], 0o644); err != nil {
			return fmt.Errorf("write SBOM: %w", err)
		}
		fmt.Printf("sbom\t%s\t%s\n", arch, p)
	}
	fmt.Printf("oci\t%s\t%s\t%s\n", strings.Join(o.Arches, ","), res.Digest, res.Path)
	return nil
}

// gitOutput is git's trimmed output in repo, or "" when git cannot answer.
func gitOutput(ctx context.Context, repo string, args ...string) string {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// debVersion is the installed version of a Debian package, or "" off Debian.
func debVersion(ctx context.Context, pkg string) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
