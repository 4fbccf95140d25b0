// Command build-packages builds the duo-confidential .deb and .rpm packages
// into dist/, reproducibly.
//
//	go run -C packaging ./cmd/build-packages                 # from the repository root
//	go run -C packaging ./cmd/build-packages -version 1.2.3 -arch amd64,arm64
//
// packaging/ is its own Go module (nfpm's dependencies stay out of the
// appliance's go.mod), hence -C packaging; the repository root is found by
// walking up from the working directory unless -repo names it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/duo-confidential/duo-confidential/packaging/build"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-packages:", err)
		os.Exit(1)
	}
}

func run() error {
	var o build.Options
	var arches, formats string
	var epoch int64
	flag.StringVar(&o.Repo, "repo", "", "repository root (default: the nearest parent directory holding cmd/duo-confidential)")
	flag.StringVar(&o.OutDir, "out", "", "output directory (default <repo>/dist)")
	flag.StringVar(&o.Version, "version", "", "package version, e.g. 1.2.3 or 1.2.3-rc1 (default: git describe, else 0.0.0-dev)")
	flag.StringVar(&o.Release, "release", "1", "package release (Debian revision)")
	flag.StringVar(&arches, "arch", "amd64", "comma-separated GOARCH values: amd64, arm64")
	flag.StringVar(&formats, "format", "deb,rpm", "comma-separated formats: deb, rpm")
	flag.Int64Var(&epoch, "mtime", 0, "Unix time of every file (default SOURCE_DATE_EPOCH, else the HEAD commit time)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(flag.Args(), " "))
	}
	if o.Repo == "" {
		r, err := build.FindRepo(".")
		if err != nil {
			return err
		}
		o.Repo = r
	}
	o.Arches = strings.Split(arches, ",")
	o.Formats = strings.Split(formats, ",")
	if epoch > 0 {
		o.MTime = time.Unix(epoch, 0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	arts, err := build.Build(ctx, o)
	if err != nil {
		return err
	}
	for _, a := range arts {
		fi, err := os.Stat(a.Path)
		if err != nil {
			return fmt.Errorf("stat %s: %w", a.Path, err)
		}
		fmt.Printf("%s\t%s\t%d bytes\t%s\n", a.Format, a.Arch, fi.Size(), a.Path)
	}
	return nil
}
