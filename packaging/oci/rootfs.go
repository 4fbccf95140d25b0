package oci

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"sort"
	"time"
)

// Paths and identity inside the image. The user id is the one distroless
// images use for "nonroot", so cluster policies written for those fit ours.
const (
	BinaryPath   = "/usr/bin/duo-confidential"
	ConfigPath   = "/etc/duo-confidential/config.yaml"
	StateDir     = "/var/lib/duo-confidential"
	CACertsPath  = "/etc/ssl/certs/ca-certificates.crt"
	SBOMPath     = "/usr/share/doc/duo-confidential/sbom.spdx.json"
	UID          = 65532
	GID          = 65532
	userName     = "duo-confidential"
	passwdFile   = "root:x:0:0:root:/root:/sbin/nologin\n" + userName + ":x:65532:65532:duo-confidential:" + StateDir + ":/sbin/nologin\n"
	groupFile    = "root:x:0:\n" + userName + ":x:65532:\n"
	nsswitchFile = "hosts: files dns\n"
)

// entry is one file or directory of the image's single layer.
type entry struct {
	path     string // absolute, no trailing slash
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// rootFS lists the image's files: the binary, CA certificates, the user
// database for the non-root user, the example configuration, the SBOM and
// the writable directories (the state directory is a volume in Kubernetes).
func rootFS(bin, caCerts, config, sbom []byte) []entry {
	files := []entry{
		{path: BinaryPath, mode: 0o755, data: bin},
		{path: CACertsPath, mode: 0o644, data: caCerts},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwdFile)},
		{path: "/etc/group", mode: 0o644, data: []byte(groupFile)},
		{path: "/etc/nsswitch.conf", mode: 0o644, data: []byte(nsswitchFile)},
		{path: ConfigPath, mode: 0o640, gid: GID, data: config},
		{path: SBOMPath, mode: 0o644, data: sbom},
		{path: StateDir, dir: true, mode: 0o700, uid: UID, gid: GID},
		{path: "/tmp", dir: true, mode: 0o1777},
		{path: "/etc/duo-confidential", dir: true, mode: 0o750, gid: GID},
	}
	// Every parent directory, root-owned 0755, unless listed above.
	have := map[string]bool{}
	for _, f := range files {
		have[f.path] = true
	}
	for _, f := range files {
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			if !have[d] {
				have[d] = true
				files = append(files, entry{path: d, dir: true, mode: 0o755})
			}
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files
}

// layerTar writes entries as an uncompressed tar with every time set to
// mtime and no user or group names, so equal input gives equal bytes.
func layerTar(files []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:    f.path[1:],
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// checkStatic refuses a binary that needs a dynamic loader: the image has
// no libc, so such a binary would fail only when the container starts.
func checkStatic(binPath string) error {
	f, err := elf.Open(binPath)
	if err != nil {
		return fmt.Errorf("%s is not an ELF binary: %w", binPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (build with CGO_ENABLED=0): the image has no libc", binPath)
		}
	}
	return nil
}

// elfArch maps an ELF machine to its GOARCH, to catch a binary handed over
// for the wrong platform.
func elfArch(binPath string) (string, error) {
	f, err := elf.Open(binPath)
	if err != nil {
		return "", fmt.Errorf("%s is not an ELF binary: %w", binPath, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("%s: unsupported machine %s", binPath, f.Machine)
}

// readFile reads a file the image needs, naming it in the error.
func readFile(what, p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return b, nil
}
