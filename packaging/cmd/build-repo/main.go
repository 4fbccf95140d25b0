// Command build-repo publishes built packages as signed apt and dnf
// repositories, with the public key, the .sources and .repo files and an
// offline bundle.
//
//	go run -C packaging ./cmd/build-repo -url https://packages.example.com/duo-confidential \
//	    -key-file /media/release-key/duo-confidential-release.asc dist/*.deb dist/*.rpm
//
// The release key comes from -key-file or the DUO_RELEASE_KEY environment
// variable (armored); a passphrase from -passphrase-file or
// DUO_RELEASE_KEY_PASSPHRASE. It is imported into a temporary GNUPGHOME that
// is deleted afterwards. -also-trust publishes another public key in the
// keyring too (the next key, before a rotation). Every package given is published: pass all the
// versions the repository should offer (the previous release's too, so
// users can roll back).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/duo-confidential/duo-confidential/packaging/build"
	"github.com/duo-confidential/duo-confidential/packaging/repo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-repo:", err)
		os.Exit(1)
	}
}

func run() error {
	var o repo.Options
	var src repo.KeySource
	var epoch int64
	flag.StringVar(&o.OutDir, "out", "", "output directory, replaced (default <repo>/dist/repo)")
	flag.StringVar(&o.URL, "url", "", "URL the output directory will be served at (required)")
	flag.StringVar(&o.Bundle, "bundle", "", "offline bundle to write (default <repo>/dist/duo-confidential-repo.tar; \"none\" for none)")
	flag.StringVar(&o.OfflineDir, "offline-dir", repo.DefaultOfflineDir, "where the offline bundle is unpacked on the target machine")
	flag.StringVar(&src.File, "key-file", "", "OpenPGP secret key (default: $"+repo.EnvKey+")")
	flag.StringVar(&src.PassphraseFile, "passphrase-file", "", "file with the key's passphrase (default: $"+repo.EnvPassphrase+", else none)")
	var alsoTrust []string
	flag.Func("also-trust", "public key file to publish in the keyring beside the release key (key rotation); repeatable", func(v string) error {
		alsoTrust = append(alsoTrust, v)
		return nil
	})
	flag.Int64Var(&epoch, "date", 0, "Unix time of the Release date, file times and repodata revision (default SOURCE_DATE_EPOCH, else now)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: build-repo -url URL [flags] PACKAGE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	o.Packages = flag.Args()
	if o.URL == "" {
		return fmt.Errorf("-url is required")
	}
	if o.OutDir == "" || o.Bundle == "" {
		root, err := build.FindRepo(".")
		if err != nil {
			return err
		}
		if o.OutDir == "" {
			o.OutDir = filepath.Join(root, "dist", "repo")
		}
		if o.Bundle == "" {
			o.Bundle = filepath.Join(root, "dist", "duo-confidential-repo.tar")
		}
	}
	if o.Bundle == "none" {
		o.Bundle = ""
	}
	switch {
	case epoch > 0:
		o.Date = time.Unix(epoch, 0)
	case os.Getenv("SOURCE_DATE_EPOCH") != "":
		n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		o.Date = time.Unix(n, 0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	signer, err := repo.LoadKey(ctx, src)
	if err != nil {
		return err
	}
	defer signer.Close()
	for _, k := range alsoTrust {
		if err := signer.AlsoTrust(ctx, k); err != nil {
			return err
		}
	}
	if err := repo.Build(ctx, signer, o); err != nil {
		return err
	}
	fmt.Printf("repository\t%s\nkey\t%s\n", o.OutDir, signer.Fingerprint())
	if o.Bundle != "" {
		fmt.Printf("bundle\t%s\n", o.Bundle)
	}
	return nil
}
