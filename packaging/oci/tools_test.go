package oci

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDebianToolsReadTheArchive has Debian's skopeo and umoci (other
// implementations than go-containerregistry) read the archive: skopeo
// inspects it and copies it into a registry-style layout, umoci unpacks it
// into a runtime bundle whose process runs as the non-root user. CI
// installs both; without them the test skips, saying so.
func TestDebianToolsReadTheArchive(t *testing.T) {
	for _, tool := range []string{"skopeo", "umoci"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install skopeo umoci)", tool)
		}
	}
	bin, ca := staticBinary(t), testCAs(t)
	out := filepath.Join(t.TempDir(), "img.oci.tar")
	res, err := Build(context.Background(), options(t, bin, ca, out))
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) []byte {
		t.Helper()
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("%s %v: %v\n%s", name, args, err, ee.Stderr)
			}
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return b
	}
	var insp struct {
		Digest       string
		Architecture string
		Os           string
		Labels       map[string]string
	}
	if err := json.Unmarshal(run("skopeo", "inspect", "oci-archive:"+out), &insp); err != nil {
		t.Fatal(err)
	}
	if insp.Digest != res.Digest.String() || insp.Architecture != "amd64" || insp.Os != "linux" ||
		insp.Labels["org.opencontainers.image.version"] != "1.2.3" {
		t.Errorf("skopeo inspect: %+v, want digest %s", insp, res.Digest)
	}
	// A multi-platform archive: skopeo picks each platform's image.
	multi := options(t, bin, ca, filepath.Join(t.TempDir(), "multi.oci.tar"))
	multi.Binaries = append(multi.Binaries, Binary{Arch: "arm64", Path: staticBinaryFor(t, "arm64")})
	if _, err := Build(context.Background(), multi); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		var m struct{ Architecture string }
		if err := json.Unmarshal(run("skopeo", "--override-arch", arch, "--override-os", "linux", "inspect", "oci-archive:"+multi.Out), &m); err != nil {
			t.Fatal(err)
		}
		if m.Architecture != arch {
			t.Errorf("skopeo --override-arch %s picked %s", arch, m.Architecture)
		}
	}
	lay := filepath.Join(t.TempDir(), "layout")
	run("skopeo", "copy", "--quiet", "oci-archive:"+out, "oci:"+lay+":copied")
	bundle := filepath.Join(t.TempDir(), "bundle")
	run("umoci", "unpack", "--rootless", "--image", lay+":copied", bundle)
	var spec struct {
		Process struct {
			User struct{ UID, GID int }
			Args []string
			Env  []string
		}
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Process.User.UID != UID || spec.Process.User.GID != GID || len(spec.Process.Args) == 0 || spec.Process.Args[0] != BinaryPath {
		t.Errorf("runtime bundle process: %+v", spec.Process)
	}
	got, err := os.ReadFile(filepath.Join(bundle, "rootfs", BinaryPath))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(bin)
	if string(got) != string(want) {
		t.Error("umoci unpacked a different binary")
	}
}
