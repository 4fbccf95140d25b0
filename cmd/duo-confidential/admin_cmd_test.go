package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

func TestAdminSetPassword(t *testing.T) {
	state := t.TempDir()
	t.Setenv("DUO_CONFIDENTIAL_STATE_DIR", state)
	tests := []struct {
		name, stdin string
		wantErr     string
	}{
		{"too short", "short\n", "12 to 72"},
		{"good", "a long enough password\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			g := &Globals{Stdout: &out, Stderr: &errOut, ctx: context.Background()}
			c := &AdminSetPasswordCmd{in: strings.NewReader(tc.stdin)}
			err := c.Run(g)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(state, statedir.AdminPasswordFile)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", fi.Mode())
			}
			if bcrypt.CompareHashAndPassword(bytes.TrimSpace(b), []byte("a long enough password")) != nil {
				t.Error("the stored hash does not match the password")
			}
			if strings.Contains(out.String()+errOut.String(), "long enough") {
				t.Error("the password was printed")
			}
		})
	}
}

func TestCLIAdminToken(t *testing.T) {
	r := runBin(t, nil, "admin", "token")
	r.want(t, 0, []string{"token:  dca_", "sha256: ", "admin.token_sha256"}, nil)
}
