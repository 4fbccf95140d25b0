// Command package-chart packages the duo-confidential Helm chart with the
// release's version (the chart's version and appVersion, so the image tag
// defaults to the same version as the packages and the OCI image), as
// `helm package --version V --app-version V` would, into dist/. The archive
// is reproducible: every entry carries the same time as the packages' files
// (-mtime, else SOURCE_DATE_EPOCH, else the HEAD commit's time), so the same
// chart and version give the same bytes.
//
//	go run -C packaging/helm/chart-test ./cmd/package-chart -version 1.2.3   # dist/duo-confidential-1.2.3.tgz
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "package-chart:", err)
		os.Exit(1)
	}
}

func run() error {
	version := flag.String("version", "", "release version, e.g. 1.2.3 (the same as the packages'); required")
	chartDir := flag.String("chart", filepath.Join("..", "duo-confidential"), "chart directory")
	out := flag.String("out", filepath.Join("..", "..", "..", "dist"), "output directory")
	epoch := flag.Int64("mtime", 0, "Unix time of every file in the archive (default SOURCE_DATE_EPOCH, else the HEAD commit time)")
	flag.Parse()
	v := strings.TrimPrefix(*version, "v")
	if v == "" {
		return fmt.Errorf("-version is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mtime := time.Unix(*epoch, 0)
	if *epoch <= 0 {
		var err error
		if mtime, err = archiveTime(ctx, *chartDir); err != nil {
			return err
		}
	}
	p, err := packageChart(*chartDir, *out, v, mtime)
	if err != nil {
		return err
	}
	fmt.Printf("chart\t%s\t%s\n", v, p)
	return nil
}

// packageChart writes the chart in chartDir with version v into out, every
// entry dated mtime, and returns the archive's path.
func packageChart(chartDir, out, v string, mtime time.Time) (string, error) {
	c, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	c.Metadata.Version, c.Metadata.AppVersion = v, v
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("chart %s: %w", v, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("create output directory: %w", err)
	}
	// Helm's Save dates every entry with the wall clock and offers no other
	// time, so it writes to a staging directory and the archive is rewritten
	// from there with fixed headers.
	stage, err := os.MkdirTemp("", "duo-confidential-chart-")
	if err != nil {
		return "", fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	staged, err := chartutil.Save(c, stage)
	if err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	p := filepath.Join(out, filepath.Base(staged))
	if err := rewriteArchive(staged, p, mtime); err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	return p, nil
}

// archiveTime is SOURCE_DATE_EPOCH, else the time of the commit checked out
// at dir: the packages' and the OCI image's convention (packaging/build).
func archiveTime(ctx context.Context, dir string) (time.Time, error) {
	src, from := os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	if src == "" {
		b, err := exec.CommandContext(ctx, "git", "-C", dir, "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("no SOURCE_DATE_EPOCH and no git commit time (set SOURCE_DATE_EPOCH or -mtime): %w", err)
		}
		src, from = strings.TrimSpace(string(b)), "commit time"
	}
	n, err := strconv.ParseInt(src, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("%s %q is not a Unix time", from, src)
	}
	return time.Unix(n, 0), nil
}
