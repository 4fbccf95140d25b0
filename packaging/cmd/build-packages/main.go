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

	"github.com/duo-confidential/duo-confidential/packaging/build"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-packages:", err)
		os.Exit(1)
	}
}

func run() error {
	shared := build.DefineFlags(flag.CommandLine, build.FlagHelp{
		Version: "package version, e.g. 1.2.3 or 1.2.3-rc1",
		MTime:   "Unix time of every file",
	})
	release := flag.String("release", "1", "package release (Debian revision)")
	formats := flag.String("format", "deb,rpm", "comma-separated formats: deb, rpm")
	flag.Parse()
	o, err := shared.Options(flag.CommandLine)
	if err != nil {
		return err
	}
	o.Release = *release
	o.Formats = strings.Split(*formats, ",")
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
