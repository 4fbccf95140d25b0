package oci

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/packaging/build"
)

// podmanRun are the podman options that work on the CI machine (a
// container itself): cgroups v1/v2 "hybrid" mode, which crun refuses, so
// runc with the cgroupfs manager; no CAP_SYS_RESOURCE, so the file and
// process limits are set at or below the machine's own instead of podman's
// defaults (which it may not raise to).
var podmanGlobal = []string{"--cgroup-manager=cgroupfs", "--runtime=runc"}

// TestPodmanServesReadyz builds the image from the packaged appliance
// binary, loads it into Debian's podman and runs `serve` in it the way the
// Helm chart runs it: read-only root file system, the image's non-root
// user, no capabilities, a tmpfs state directory, the API key from a
// mounted file. Privatemode is unreachable (no network here), so /readyz
// must answer 503 with the reason and /healthz 200. Needs root, podman and
// runc (CI installs them); skips otherwise, saying why.
func TestPodmanServesReadyz(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building the appliance and starting a container")
	}
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install podman runc)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for podman's storage and host network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	repo, err := build.FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	o, err := build.Resolved(ctx, build.Options{Repo: repo, Version: "0.0.1-podman", MTime: created})
	if err != nil {
		t.Fatal(err)
	}
	bin, err := build.CompileBinary(ctx, o, "amd64", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := options(t, bin, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(t.TempDir(), "img.oci.tar"))
	opts.Version = o.Version
	opts.Config = build.ExampleConfig(repo)
	if _, err := Build(ctx, opts); err != nil {
		t.Fatal(err)
	}
	podman := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "podman", append(podmanGlobal, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := podman("load", "-q", "-i", opts.Out); err != nil {
		t.Fatalf("podman load: %v\n%s", err, out)
	}
	ref := "localhost/duo-confidential:" + o.Version
	t.Cleanup(func() { podman("rmi", "-f", ref) })
	proxy, admin := freePort(t), freePort(t)
	// The packaged binary has no sandbox (build tag duo_production), so it
	// runs `serve` as in production, with an API key file and a Privatemode
	// endpoint where nothing listens: it serves, and /readyz says why it
	// is not ready.
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte("test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(keyFile, UID, GID); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("duo-oci-test-%d", os.Getpid())
	out, err := podman("run", "-d", "--name", name, "--network=host",
		"--read-only", "--read-only-tmpfs=false",
		"--mount=type=tmpfs,destination="+StateDir+",tmpfs-mode=0700,chown=true",
		"--mount=type=tmpfs,destination=/tmp",
		"--mount=type=bind,source="+keyFile+",destination=/run/secrets/api-key,ro=true",
		"--cap-drop=all", "--security-opt=no-new-privileges",
		"--ulimit=nofile=4096:4096", "--ulimit=nproc=1024:1024",
		"-e", "DUO_CONFIDENTIAL_PRIVATEMODE_API_KEY_FILE=/run/secrets/api-key",
		"-e", "DUO_CONFIDENTIAL_PRIVATEMODE_ENDPOINT=https://127.0.0.1:9",
		"-e", "DUO_CONFIDENTIAL_PROXY_LISTEN="+proxy,
		"-e", "DUO_CONFIDENTIAL_ADMIN_LISTEN="+admin,
		ref)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := podman("logs", name)
			t.Logf("container log:\n%s", logs)
		}
		podman("rm", "-f", "-t", "5", name)
	})
	if ver, err := podman("exec", name, BinaryPath, "version"); err != nil || !strings.Contains(ver, o.Version) {
		t.Fatalf("podman exec version: %v\n%s", err, ver)
	}
	inspect, _ := podman("inspect", "-f", "{{.Config.User}}", name)
	if inspect != "65532:65532" {
		t.Errorf("container user %q, want 65532:65532", inspect)
	}
	// serve uses its local CA; the probe, like a kubelet's, does not
	// verify it.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var last string
	for i := 0; i < 120; i++ {
		resp, err := client.Get("https://" + proxy + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			var r struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason"`
			}
			if resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(b, &r) == nil && !r.Ready && r.Reason != "" {
				t.Logf("/readyz from the container: %s", last)
				hz, err := client.Get("https://" + proxy + "/healthz")
				if err != nil || hz.StatusCode != http.StatusOK {
					t.Errorf("/healthz: %v %v", err, hz)
				} else {
					hz.Body.Close()
				}
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("/readyz never answered 503 with a reason; last: %s", last)
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
