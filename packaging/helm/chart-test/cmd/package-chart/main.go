// Command package-chart packages the duo-confidential Helm chart with the
// release's version (the chart's version and appVersion, so the image tag
// defaults to the same version as the packages and the OCI image), as
// `helm package --version V --app-version V` would, into dist/.
//
//	go run -C packaging/helm/chart-test ./cmd/package-chart -version 1.2.3   # dist/duo-confidential-1.2.3.tgz
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	flag.Parse()
	v := strings.TrimPrefix(*version, "v")
	if v == "" {
		return fmt.Errorf("-version is required")
	}
	c, err := loader.Load(*chartDir)
	if err != nil {
		return fmt.Errorf("load chart: %w", err)
	}
	c.Metadata.Version, c.Metadata.AppVersion = v, v
	if err := c.Validate(); err != nil {
		return fmt.Errorf("chart %s: %w", v, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	p, err := chartutil.Save(c, *out)
	if err != nil {
		return fmt.Errorf("package: %w", err)
	}
	fmt.Printf("chart\t%s\t%s\n", v, p)
	return nil
}
