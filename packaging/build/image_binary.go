package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Resolved is Options with every default filled in and checked (version
// from git, file time from SOURCE_DATE_EPOCH or the HEAD commit), so other
// artifacts (the OCI image, the Helm chart) carry the same version and time
// as the packages of the same build.
func Resolved(ctx context.Context, opts Options) (Options, error) {
	return resolve(ctx, opts)
}

// CompileBinary builds the same static, stamped binary the packages ship,
// for arch, into dir; o must come from Resolved.
func CompileBinary(ctx context.Context, o Options, arch, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create binary directory: %w", err)
	}
	return compile(ctx, o, arch, dir)
}

// ExampleConfig is the path of the shipped example configuration (the
// packages' /etc/duo-confidential/config.yaml) in the repository at repo.
func ExampleConfig(repo string) string {
	return filepath.Join(repo, "appliance", "config", "config.example.yaml")
}
