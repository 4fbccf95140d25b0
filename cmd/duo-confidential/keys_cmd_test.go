package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// The binary tests use binPath and runBin from cli_test.go. Every run gets
// a temporary state directory through DUO_CONFIDENTIAL_STATE_DIR and
// empties the operator key variables the test process might carry.

func keysEnv(stateDir string, extra ...string) []string {
	return append([]string{
		"DUO_CONFIDENTIAL_STATE_DIR=" + stateDir,
		keys.EnvSigningKey + "=", keys.EnvValidationKey + "=",
		keys.EnvWorkflowSigningKey + "=", keys.EnvWorkflowValidateKey + "=",
	}, extra...)
}

func keysShowJSON(t *testing.T, env []string) keysJSON {
	t.Helper()
	r := runBin(t, env, "keys", "show", "--json")
	r.want(t, 0, nil, nil)
	var out keysJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("keys show --json is not JSON: %v\n%s", err, r.stdout)
	}
	if strings.Contains(r.stdout, "PRIVATE") || strings.Contains(r.stdout, `"d"`) {
		t.Errorf("keys show prints key material:\n%s", r.stdout)
	}
	return out
}

func TestCLIKeysShowAndRotate(t *testing.T) {
	state := t.TempDir()
	env := keysEnv(state)
	dir := filepath.Join(state, statedir.KeysDir)

	// Nothing yet: show says so and creates nothing.
	if got := keysShowJSON(t, env); got.Source != "none" || len(got.Keys) != 0 || got.Dir != dir {
		t.Errorf("show on an empty state dir: %+v", got)
	}
	runBin(t, env, "keys", "show").want(t, 0, []string{"No keys in " + dir + " yet"}, nil)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("keys show created %s", dir)
	}

	// First rotate generates the first key.
	r := runBin(t, env, "keys", "rotate")
	r.want(t, 0, []string{"generated the first signing key", "RSA-3072"}, nil)
	first := keysShowJSON(t, env)
	if first.Source != keys.SourceGenerated || len(first.Keys) != 1 || first.Keys[0].Role != keys.RoleSigning ||
		first.Keys[0].Bits != keys.DefaultBits || first.Keys[0].Created.IsZero() || first.Keys[0].ID == "" {
		t.Fatalf("after the first rotate: %+v", first)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, statedir.KeysFile): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (err %v), want %04o", p, fi.Mode().Perm(), err, want)
		}
	}

	// Second rotate: new signing key, the first becomes validation.
	r = runBin(t, env, "keys", "rotate")
	r.want(t, 0, []string{"Rotated", "previous key:  " + first.Keys[0].ID, "restart"}, nil)
	second := keysShowJSON(t, env)
	if len(second.Keys) != 2 || second.Keys[1].ID != first.Keys[0].ID || second.Keys[1].Role != keys.RoleValidation ||
		second.Keys[0].ID == first.Keys[0].ID || !strings.Contains(r.stdout, "signing key:   "+second.Keys[0].ID) {
		t.Fatalf("after the second rotate: %+v\n%s", second, r.stdout)
	}

	// The table.
	runBin(t, env, "keys", "show").want(t, 0, []string{"ROLE", "signing     " + second.Keys[0].ID, "validation  " + first.Keys[0].ID, "3072"}, nil)

	// A loose key file is refused with the fix.
	key := filepath.Join(dir, statedir.KeysFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	runBin(t, env, "keys", "show").want(t, 1, nil, []string{"chmod 600 " + key})
	runBin(t, env, "keys", "rotate").want(t, 1, nil, []string{"chmod 600 " + key})
}

func TestCLIKeysOperator(t *testing.T) {
	state := t.TempDir()
	pemFile := filepath.Join(t.TempDir(), "sign.pem")
	data, err := os.ReadFile(filepath.Join("..", "..", "gateway", "keys", "testdata", "rsa2048-pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pemFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := keysEnv(state, keys.EnvSigningKey+"=@"+pemFile, keys.EnvWorkflowSigningKey+"="+string(data))
	got := keysShowJSON(t, env)
	if got.Source != keys.SourceOperator || len(got.Keys) != 1 || got.Keys[0].Bits != 2048 || !got.Keys[0].Created.IsZero() {
		t.Errorf("show with operator keys: %+v", got)
	}
	runBin(t, env, "keys", "show").want(t, 0, []string{"Keys from the environment", "signing"}, nil)
	runBin(t, env, "keys", "rotate").want(t, 1, nil, []string{"keys rotate: the keys come from " + keys.EnvSigningKey})
	if _, err := os.Stat(filepath.Join(state, statedir.KeysDir)); !os.IsNotExist(err) {
		t.Error("operator keys: the keys directory was created")
	}

	// A small key, and a Duo Workflow key that differs from the AIGW one.
	for name, want := range map[string]string{
		"rsa1024.pem":       keys.EnvWorkflowSigningKey + ": RSA key size not accepted",
		"rsa2048-other.pem": keys.EnvSigningKey + " and " + keys.EnvWorkflowSigningKey + " hold different keys",
	} {
		other, err := os.ReadFile(filepath.Join("..", "..", "gateway", "keys", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		runBin(t, keysEnv(state, keys.EnvSigningKey+"=@"+pemFile, keys.EnvWorkflowSigningKey+"="+string(other)), "keys", "show").
			want(t, 1, nil, []string{want})
	}
}
