package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Installed paths.
const (
	BinPath      = "/usr/bin/" + Name
	ConfDir      = "/etc/" + Name
	ConfPath     = ConfDir + "/config.yaml"
	UnitPath     = "/usr/lib/systemd/system/" + Name + ".service"
	SysusersPath = "/usr/lib/sysusers.d/" + Name + ".conf"
	DocDir       = "/usr/share/doc/" + Name
	LintianPath  = "/usr/share/lintian/overrides/" + Name
	ManPath      = "/usr/share/man/man1/" + Name + ".1.gz"
	LicenseDir   = "/usr/share/licenses/" + Name
)

// Maintainer is the packages' Maintainer/Packager field.
const Maintainer = "duo-confidential maintainers <maintainers@duo-confidential.invalid>"

const description = `attesting proxy and AI gateway for GitLab Duo on Privatemode
duo-confidential lets GitLab Self-Managed run GitLab Duo on the
Privatemode confidential-computing LLM service. It verifies the remote
service's hardware attestation (Intel TDX, AMD SEV-SNP) before any prompt
leaves the machine, encrypts every request to the attested backend, and
serves a GitLab AI Gateway compatible front end, an OpenAI-compatible API
and an admin UI.`

// pack writes one package and returns its path.
func pack(ctx context.Context, o Options, format, arch, bin, stage string) (string, error) {
	sc, err := scripts(o.Repo)
	if err != nil {
		return "", err
	}
	docs, err := writeDocs(ctx, o, format, bin, filepath.Join(stage, "docs-"+format))
	if err != nil {
		return "", err
	}
	info := &nfpm.Info{
		Name:        Name,
		Arch:        arch,
		Platform:    "linux",
		Version:     o.Version,
		Release:     o.Release,
		Section:     "net",
		Priority:    "optional",
		Maintainer:  Maintainer,
		Description: description,
		Vendor:      "duo-confidential",
		License:     licenseName,
		MTime:       o.MTime,
		Overridables: nfpm.Overridables{
			Contents: contents(o.Repo, format, bin, docs),
			Umask:    0o022,
			Scripts: nfpm.Scripts{
				PreInstall:  sc["preinst"],
				PostInstall: sc["postinst"],
				PreRemove:   sc["prerm"],
				PostRemove:  sc["postrm"],
			},
			Deb: nfpm.Deb{Compression: "xz"},
			RPM: nfpm.RPM{
				Summary:     "Attesting proxy and AI gateway for GitLab Duo on Privatemode",
				Group:       "System Environment/Daemons",
				Compression: "xz",
				Packager:    Maintainer,
				// The build host would otherwise be recorded, and differ.
				BuildHost: "reproducible",
			},
		},
	}
	if format == "rpm" {
		// The deb's changelog is a file in contents instead.
		info.Changelog = docs["changelog"]
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("prepare: %w", err)
	}
	// nfpm keeps the order it was given; sort so the archive order never
	// depends on how contents() was written.
	sort.SliceStable(info.Contents, func(i, j int) bool {
		return info.Contents[i].Destination < info.Contents[j].Destination
	})
	p, err := nfpm.Get(format)
	if err != nil {
		return "", fmt.Errorf("packager: %w", err)
	}
	path := filepath.Join(o.OutDir, p.ConventionalFileName(info))
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("create package: %w", err)
	}
	defer os.Remove(tmp)
	if err := p.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("package: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write package: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("move package into place: %w", err)
	}
	return path, nil
}

// contents lists every file of the package with its owner and mode.
func contents(repo, format, bin string, docs map[string]string) files.Contents {
	pk := filepath.Join(repo, "packaging")
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	c := files.Contents{
		file(bin, BinPath, 0o755),
		{
			Destination: ConfDir, Type: files.TypeDir,
			FileInfo: &files.ContentFileInfo{Mode: 0o750, Owner: "root", Group: Name},
		},
		{
			// A conffile / %config(noreplace): an edited file is never
			// replaced (dpkg asks or keeps it; rpm writes config.yaml.rpmnew).
			Source: filepath.Join(repo, "appliance", "config", "config.example.yaml"), Destination: ConfPath,
			Type:     files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o640, Owner: "root", Group: Name},
		},
		file(filepath.Join(pk, "systemd", Name+".service"), UnitPath, 0o644),
		file(filepath.Join(pk, "sysusers", Name+".conf"), SysusersPath, 0o644),
		file(filepath.Join(repo, "README.md"), DocDir+"/README.md", 0o644),
		file(docs["man"], ManPath, 0o644),
	}
	switch format {
	case "deb":
		c = append(c,
			file(docs["copyright"], DocDir+"/copyright", 0o644),
			file(docs["changelog"], DocDir+"/changelog.Debian.gz", 0o644),
			file(filepath.Join(pk, "debian", "lintian-overrides"), LintianPath, 0o644))
	case "rpm":
		for _, x := range c {
			switch {
			case strings.HasPrefix(x.Destination, DocDir+"/"), strings.HasPrefix(x.Destination, "/usr/share/man/"):
				x.Type = files.TypeRPMDoc
			}
		}
		// %license: the place rpm-based systems keep licence texts.
		lic := file(docs["copyright"], LicenseDir+"/copyright", 0o644)
		lic.Type = files.TypeRPMLicense
		c = append(c, lic)
	}
	return c
}
