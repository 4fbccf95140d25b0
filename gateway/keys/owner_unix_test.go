//go:build unix

package keys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestEnvKeyFileModes: an operator-supplied key file ("@file") passes with
// owner-only modes, and also root-owned and group-readable (not writable) —
// a Kubernetes Secret volume with fsGroup (root:fsGroup 0440); the
// appliance's own key file in the state directory stays owner-only.
func TestEnvKeyFileModes(t *testing.T) {
	pemBytes := pkcs1PEM(poolKey(0))
	asRoot := os.Geteuid() == 0
	for _, c := range []struct {
		name   string
		mode   os.FileMode
		uid    int // -1: the test's own user
		ok     bool
		isRoot bool // the case needs root (to own files as root or as another user)
	}{
		{"owner 0600", 0o600, -1, true, false},
		{"owner 0400", 0o400, -1, true, false},
		{"root-owned 0440 (Secret volume with fsGroup)", 0o440, 0, true, true},
		{"root-owned 0640", 0o640, 0, true, true},
		{"root-owned 0460: group may write", 0o460, 0, false, true},
		{"root-owned 0444: everyone may read", 0o444, 0, false, true},
		{"root-owned 0404", 0o404, 0, false, true},
		{"other user's 0440", 0o440, 65534, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.isRoot && !asRoot {
				t.Skip("needs root to give the file another owner")
			}
			p := filepath.Join(t.TempDir(), "signing-key.pem")
			if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			if c.uid >= 0 {
				if err := os.Chown(p, c.uid, c.uid); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(p, c.mode); err != nil {
				t.Fatal(err)
			}
			_, _, err := envKey(EnvSigningKey, "@"+p)
			if c.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !c.ok && !errors.Is(err, ErrInsecureMode) {
				t.Errorf("err %v, want ErrInsecureMode", err)
			}
			// The store's own file never gets the exception.
			if c.mode&0o077 != 0 {
				if _, err := readKeyFile(p, ownerOnly); !errors.Is(err, ErrInsecureMode) {
					t.Errorf("ownerOnly: err %v, want ErrInsecureMode", err)
				}
			}
		})
	}
}
