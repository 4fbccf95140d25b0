package build_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/packaging/repo"
)

// docURL is the repository URL docs/operations.md uses; the tests serve the
// repository on loopback and put that URL in its place, the only change
// they make to the documented commands.
const docURL = "https://packages.example.com/duo-confidential"

// bundleName is the offline bundle's name in the documented commands.
const bundleName = "duo-confidential-repo.tar"

var (
	keysOnce sync.Once
	keyFiles [2]string // the release key and an unrelated one, armored secret keys
	keysErr  error
)

// releaseKeys generates (once per test binary) two throwaway RSA keys the
// way docs/operations.md tells a release manager to, and returns the files
// their secret keys were exported to: the release key and a wrong one.
func releaseKeys(t *testing.T) (release, wrong string) {
	t.Helper()
	need(t, "gpg", "gnupg")
	keysOnce.Do(func() {
		dir, err := os.MkdirTemp("", "duo-keys-")
		if err != nil {
			keysErr = err
			return
		}
		for i, name := range []string{"duo-confidential release (test)", "someone else (test)"} {
			home := filepath.Join(dir, "home"+string(rune('0'+i)))
			if keysErr = os.Mkdir(home, 0o700); keysErr != nil {
				return
			}
			gpg := func(args ...string) ([]byte, error) {
				cmd := exec.Command("gpg", append([]string{"--batch", "--homedir", home}, args...)...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					return nil, errors.New(err.Error() + ": " + stderr.String())
				}
				return out, nil
			}
			if _, keysErr = gpg("--passphrase", "", "--quick-generate-key", name+" <release@duo-confidential.invalid>", "rsa3072", "sign", "never"); keysErr != nil {
				return
			}
			var sec []byte
			if sec, keysErr = gpg("--armor", "--export-secret-keys"); keysErr != nil {
				return
			}
			keyFiles[i] = filepath.Join(dir, "key"+string(rune('0'+i))+".asc")
			if keysErr = os.WriteFile(keyFiles[i], sec, 0o600); keysErr != nil {
				return
			}
			_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		}
	})
	if keysErr != nil {
		t.Fatalf("generate throwaway keys: %v", keysErr)
	}
	return keyFiles[0], keyFiles[1]
}

// signer loads a key file as build-repo does.
func signer(t *testing.T, keyFile string) *repo.Signer {
	t.Helper()
	need(t, "apt-ftparchive", "apt-utils")
	need(t, "createrepo_c", "createrepo-c")
	need(t, "rpmsign", "rpm")
	s, err := repo.LoadKey(context.Background(), repo.KeySource{File: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// publish builds the repository from pkgs into dir (replacing it) for url,
// and the offline bundle when bundle is not "".
func publish(t *testing.T, s *repo.Signer, dir, url, bundle string, pkgs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := repo.Build(ctx, s, repo.Options{Packages: pkgs, OutDir: dir, URL: url, Bundle: bundle, Date: testMTime})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// serve serves dir over HTTP on a loopback port until the test ends and
// returns its URL. dir may be replaced while served (a new publication).
func serve(t *testing.T, dir string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(dir))
	// No conditional answers: a publication rewritten within the same second
	// as the previous one keeps its one-second mtime, and a 304 would leave
	// apt on the old index (a flaky "after apt upgrade" failure).
	noCache := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("If-Modified-Since")
		r.Header.Del("If-None-Match")
		r.Header.Del("If-Range")
		files.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: noCache, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// clientRoot is a fresh Debian machine for the repository tests: the cached
// root, with Debian's own mirror removed from its apt sources (tests reach
// nothing beyond loopback), a sudo that just runs its command (the root is
// root already; the documented commands keep their sudo), and an empty rpm
// database as an rpm-based system has.
func clientRoot(t *testing.T) string {
	t.Helper()
	root := debianRoot(t)
	for _, p := range []string{"usr/bin/curl", "usr/bin/dnf", "usr/bin/rpmkeys"} {
		if !exists(root, p) {
			t.Skipf("%s has no %s: rebuild it with packaging/ci/make-rootfs.sh", rootfsDir(), p)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sudo := "#!/bin/sh\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/sudo"), []byte(sudo), 0o755); err != nil {
		t.Fatal(err)
	}
	in(t, root, "rpm", "--initdb")
	return root
}

// docBlock returns the shell block of docs/operations.md marked with
// "<!-- ci: name -->" on the line before its opening fence.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	doc := repoFile(t, "docs/operations.md")
	re := regexp.MustCompile("(?s)<!-- ci: " + regexp.QuoteMeta(name) + " -->\n```sh\n(.*?)```\n")
	m := re.FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/operations.md has no shell block marked <!-- ci: %s -->", name)
	}
	return m[1]
}

// yes answers every question with y, as an admin at the prompt would
// ("Is this ok", "Do you want to continue", importing the shown key).
type yes struct{}

func (yes) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "y\n"[i%2]
	}
	return len(p) &^ 1, nil
}

// runDoc runs the documented block name in root as one shell script (as
// root, from /root, answering yes), with the documented URL replaced by url.
// It returns the combined output and the error.
func runDoc(t *testing.T, root, name, url string) (string, error) {
	t.Helper()
	script := docBlock(t, name)
	if url != "" {
		script = strings.ReplaceAll(script, docURL, url)
	}
	return runScript(root, script)
}

// runScript runs a shell script in root as root, from /root, answering
// every question with yes; it returns the combined output.
func runScript(root, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", root, "/bin/sh", "-eux", "-c", "cd /root\n"+script)
	cmd.Stdin = yes{}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C.UTF-8", "TERM=dumb"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustDoc runs a documented block that must succeed.
func mustDoc(t *testing.T, root, name, url string) string {
	t.Helper()
	out, err := runDoc(t, root, name, url)
	if err != nil {
		t.Fatalf("docs block %q: %v\n%s", name, err, out)
	}
	return out
}

// debVersion is the installed version of the package in root, "" if none.
func debVersion(root string) string {
	out, _, err := runErr("chroot", root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}", "duo-confidential")
	// "ii " installed, "hi " installed and held.
	if err != nil || len(out) < 3 || out[1:3] != "i " {
		return ""
	}
	return strings.TrimSpace(out[3:])
}

// rpmVersion is the installed version-release of the package in root, ""
// if none.
func rpmVersion(root string) string {
	out, _, err := runErr("chroot", root, "rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", "duo-confidential")
	if err != nil {
		return ""
	}
	return out
}

// replaceKeyring puts s's public key (both forms) into the published tree
// at web, as if a client had fetched the real key from elsewhere.
func replaceKeyring(t *testing.T, s *repo.Signer, web string) {
	t.Helper()
	for name, armor := range map[string]bool{repo.KeyringFile: false, repo.ArmoredKey: true} {
		key, err := s.PublicKey(context.Background(), armor)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(web, name), key, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
