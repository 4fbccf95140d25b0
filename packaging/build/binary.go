package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ProductionTag is the build tag of the packaged binary: it leaves out the
// demo, the sandbox backend and every path that could trust test vendor roots
// (cmd/duo-confidential/scaffolding_production.go).
const ProductionTag = "duo_production"

// compile builds the static appliance binary for arch into dir and returns
// its path. The flags make it reproducible: -trimpath drops build paths,
// CGO_ENABLED=0 drops the host's C toolchain and libc, GOFLAGS and GOWORK from
// the caller's environment are ignored, and VCS stamping is used only when
// git can describe the checkout (the same commit stamps the same values).
func compile(ctx context.Context, o Options, arch, dir string) (string, error) {
	bin := filepath.Join(dir, Name)
	buildvcs := "false"
	if _, err := git(ctx, o.Repo, "rev-parse", "HEAD"); err == nil {
		buildvcs = "true"
	}
	args := []string{
		"build", "-trimpath", "-buildvcs=" + buildvcs, "-tags", ProductionTag,
		"-ldflags", "-s -w -X main.version=" + o.Version,
		"-o", bin, "./cmd/" + Name,
	}
	cmd := exec.CommandContext(ctx, o.GoBin, args...)
	cmd.Dir = o.Repo
	cmd.Env = append(cleanEnv(os.Environ()),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build for %s: %w\n%s", arch, err, stderr.String())
	}
	return bin, nil
}

// cleanEnv drops the variables compile sets itself, and GOAMD64/GOARM64
// (their default is the portable baseline a package must target).
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOFLAGS", "GOWORK", "GOAMD64", "GOARM64", "GOEXPERIMENT":
			continue
		}
		out = append(out, kv)
	}
	return out
}
