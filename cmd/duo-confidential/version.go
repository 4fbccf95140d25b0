package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is stamped at release build time with
// -ldflags "-X main.version=v1.2.3". It is a package variable only because
// the linker can set nothing else; nothing assigns it at run time.
var version string

// VersionInfo describes the running binary; `version --json` prints it.
type VersionInfo struct {
	Version    string `json:"version"`               // release version, or the module version, or "devel"
	Commit     string `json:"commit,omitempty"`      // VCS revision the binary was built from
	CommitTime string `json:"commit_time,omitempty"` // RFC 3339 time of that revision
	Modified   bool   `json:"modified,omitempty"`    // built from a tree with uncommitted changes
	GoVersion  string `json:"go_version"`            // toolchain that built it
	Platform   string `json:"platform"`              // GOOS/GOARCH
}

// buildVersion gathers VersionInfo from the stamped version and the build
// information the Go toolchain embeds.
func buildVersion() VersionInfo {
	v := VersionInfo{
		Version:   version,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	return v
}

// String formats the info on one line, e.g.
// "duo-confidential v1.2.3 (commit 0123abcd, 2025-01-02T03:04:05Z, go1.26.8, linux/amd64)".
func (v VersionInfo) String() string {
	var details []string
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if v.Modified {
			c += "+modified"
		}
		details = append(details, "commit "+c)
	}
	if v.CommitTime != "" {
		details = append(details, v.CommitTime)
	}
	details = append(details, v.GoVersion, v.Platform)
	return fmt.Sprintf("%s %s (%s)", progName, v.Version, strings.Join(details, ", "))
}

// VersionCmd prints the version.
type VersionCmd struct {
	JSON bool `help:"Print as a JSON object."`
}

// Run prints the version to stdout, as one line or as JSON.
func (c *VersionCmd) Run(g *Globals) error {
	v := buildVersion()
	if !c.JSON {
		_, err := fmt.Fprintln(g.stdout(), v)
		return err
	}
	enc := json.NewEncoder(g.stdout())
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write version: %w", err)
	}
	return nil
}
