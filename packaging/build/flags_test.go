package build_test

import (
	"bytes"
	"flag"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/packaging/build"
)

// The shared flags of build-packages and build-image turn into the same
// Options the commands built by hand before: defaults left to Resolved, the
// repository found from the working directory, -mtime 0 or less not given.
func TestCommandFlags(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string // working directory; default this package's
		args    []string
		want    build.Options
		wantErr string
	}{
		{
			name: "defaults",
			want: build.Options{Repo: root, Arches: []string{"amd64"}},
		},
		{
			name: "every flag",
			args: []string{"-repo", "/src/duo", "-out", "/srv/out", "-version", "v1.2.3-rc1", "-arch", "amd64,arm64", "-mtime", "1700000000"},
			want: build.Options{Repo: "/src/duo", OutDir: "/srv/out", Version: "v1.2.3-rc1",
				Arches: []string{"amd64", "arm64"}, MTime: time.Unix(1700000000, 0)},
		},
		{
			name: "mtime zero is not given",
			args: []string{"-repo", "/src/duo", "-mtime", "0"},
			want: build.Options{Repo: "/src/duo", Arches: []string{"amd64"}},
		},
		{
			name: "negative mtime is not given",
			args: []string{"-repo", "/src/duo", "-mtime", "-5"},
			want: build.Options{Repo: "/src/duo", Arches: []string{"amd64"}},
		},
		{
			name: "arch passed through for Resolved to check",
			args: []string{"-repo", "/src/duo", "-arch", "riscv64"},
			want: build.Options{Repo: "/src/duo", Arches: []string{"riscv64"}},
		},
		{
			name:    "positional arguments refused",
			args:    []string{"-version", "1.2.3", "dist", "extra"},
			wantErr: "unexpected arguments: dist extra",
		},
		{
			name:    "no repository above the working directory",
			dir:     t.TempDir(),
			wantErr: "(pass -repo)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dir != "" {
				t.Chdir(tt.dir)
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			shared := build.DefineFlags(fs, build.FlagHelp{Version: "v", MTime: "m"})
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := shared.Options(fs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Options = %+v\nwant      %+v", got, tt.want)
			}
		})
	}
}

// Each command words -version and -mtime its own way; the defaults said in
// the help follow.
func TestCommandFlagsHelp(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	build.DefineFlags(fs, build.FlagHelp{Version: "image version, e.g. 1.2.3", MTime: "Unix time of everything in the image"})
	fs.PrintDefaults()
	for _, want := range []string{
		"image version, e.g. 1.2.3 (default: git describe, else 0.0.0-dev)",
		"Unix time of everything in the image (default SOURCE_DATE_EPOCH, else the HEAD commit time)",
		"-repo string", "-out string", `comma-separated GOARCH values: amd64, arm64 (default "amd64")`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}
