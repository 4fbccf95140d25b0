package doctor

import (
	"os"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

func TestStateFileMode(t *testing.T) {
	tests := []struct {
		rel   string
		dir   bool
		want  os.FileMode
		label string
	}{
		{".", true, statedir.DirMode, "the state directory"},
		{"local-ca", true, statedir.DirMode, "a subdirectory"},
		{"collateral.json", false, statedir.PublicMode, "the collateral bundle"},
		{"local-ca/ca.crt", false, statedir.PublicMode, "the local CA certificate"},
		{"local-ca/ca.key", false, statedir.SecretMode, "the local CA key"},
		{"trust-log.jsonl", false, statedir.SecretMode, "the trust log"},
		{"admin-password", false, statedir.SecretMode, "the admin password hash"},
		{"keys/keys.pem", false, statedir.SecretMode, "the gateway keys"},
		{"keys/.lock", false, statedir.PublicMode, "a lock file"},
		{"certmagic/locks/issue_cert_vm.lock", false, statedir.PublicMode, "certmagic's lock"},
		{"certmagic/certificates/duo-confidential-local-ca/vm/vm.key", false, statedir.SecretMode, "a leaf key"},
		{"unknown-file", false, statedir.SecretMode, "anything else"},
	}
	for _, tt := range tests {
		if got := StateFileMode(tt.rel, tt.dir); got != tt.want {
			t.Errorf("%s (%s): %04o, want %04o", tt.label, tt.rel, got, tt.want)
		}
	}
}
