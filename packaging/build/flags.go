package build

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// FlagHelp is the help text of the shared flags whose meaning differs between
// commands; each is the start of the sentence, the default is added to it.
type FlagHelp struct {
	Version string // -version, e.g. "package version, e.g. 1.2.3"
	MTime   string // -mtime, e.g. "Unix time of every file"
}

// CommandFlags are the flags build-packages and build-image share: -repo,
// -out, -version, -arch and -mtime. DefineFlags makes them; Options reads
// them once the flag set is parsed.
type CommandFlags struct {
	opts   Options
	arches string
	epoch  int64
}

// DefineFlags defines the shared flags on fs.
func DefineFlags(fs *flag.FlagSet, help FlagHelp) *CommandFlags {
	f := &CommandFlags{}
	fs.StringVar(&f.opts.Repo, "repo", "", "repository root (default: the nearest parent directory holding cmd/duo-confidential)")
	fs.StringVar(&f.opts.OutDir, "out", "", "output directory (default <repo>/dist)")
	fs.StringVar(&f.opts.Version, "version", "", help.Version+" (default: git describe, else 0.0.0-dev)")
	fs.StringVar(&f.arches, "arch", "amd64", "comma-separated GOARCH values: amd64, arm64")
	fs.Int64Var(&f.epoch, "mtime", 0, help.MTime+" (default SOURCE_DATE_EPOCH, else the HEAD commit time)")
	return f
}

// Options is what the parsed flags of fs say: it refuses positional
// arguments and finds the repository root from the working directory when
// -repo is not given. Defaults that need git (version, time) are left to
// Resolved and Build; a -mtime of 0 or less means "not given".
func (f *CommandFlags) Options(fs *flag.FlagSet) (Options, error) {
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	o := f.opts
	if o.Repo == "" {
		r, err := FindRepo(".")
		if err != nil {
			return Options{}, err
		}
		o.Repo = r
	}
	o.Arches = strings.Split(f.arches, ",")
	if f.epoch > 0 {
		o.MTime = time.Unix(f.epoch, 0)
	}
	return o, nil
}
