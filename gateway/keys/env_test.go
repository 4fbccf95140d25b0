package keys

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadEnv(t *testing.T) {
	k, prev, other := poolKey(0), poolKey(1), poolKey(2)
	kID, prevID := mustID(t, k), mustID(t, prev)
	dir := t.TempDir()
	file := func(name string, data []byte, m os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, m); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p8file := file("sign8.pem", pkcs8PEM(t, k), 0o600)
	p1file := file("prev1.pem", pkcs1PEM(prev), 0o400)
	loose := file("loose.pem", pkcs8PEM(t, k), 0o644)
	escaped := strings.ReplaceAll(string(pkcs8PEM(t, k)), "\n", `\n`)

	tests := []struct {
		name string
		env  []string
		want []string // Validation() ids; nil: no operator keys
		err  string
	}{
		{"nothing set", []string{"PATH=/bin", "AIGW_SELF_SIGNED_JWT__SIGNING_KEY="}, nil, ""},
		{"PKCS#1 text", []string{EnvSigningKey + "=" + string(pkcs1PEM(k))}, []string{kID}, ""},
		{"PKCS#8 text with validation", []string{EnvSigningKey + "=" + string(pkcs8PEM(t, k)), EnvValidationKey + "=" + string(pkcs1PEM(prev))}, []string{kID, prevID}, ""},
		{"escaped newlines", []string{EnvSigningKey + "=" + escaped}, []string{kID}, ""},
		{"@file PKCS#8 and PKCS#1", []string{EnvSigningKey + "=@" + p8file, EnvValidationKey + "=@" + p1file}, []string{kID, prevID}, ""},
		{"Duo Workflow pair only", []string{EnvWorkflowSigningKey + "=@" + p8file, EnvWorkflowValidateKey + "=" + string(pkcs8PEM(t, prev))}, []string{kID, prevID}, ""},
		{"both pairs, same keys in different encodings", []string{
			EnvSigningKey + "=" + string(pkcs1PEM(k)), EnvWorkflowSigningKey + "=@" + p8file,
			EnvValidationKey + "=@" + p1file, EnvWorkflowValidateKey + "=" + string(pkcs8PEM(t, prev)),
		}, []string{kID, prevID}, ""},
		{"validation equal to signing", []string{EnvSigningKey + "=@" + p8file, EnvValidationKey + "=" + string(pkcs1PEM(k))}, []string{kID}, ""},
		{"last assignment wins", []string{EnvSigningKey + "=junk", EnvSigningKey + "=@" + p8file}, []string{kID}, ""},

		{"mismatched signing pair", []string{EnvSigningKey + "=@" + p8file, EnvWorkflowSigningKey + "=" + string(pkcs1PEM(other))}, nil,
			EnvSigningKey + " and " + EnvWorkflowSigningKey + " hold different keys"},
		{"mismatched validation pair", []string{EnvSigningKey + "=@" + p8file, EnvValidationKey + "=@" + p1file, EnvWorkflowValidateKey + "=" + string(pkcs1PEM(other))}, nil,
			EnvValidationKey + " and " + EnvWorkflowValidateKey + " hold different keys"},
		{"validation without signing", []string{EnvValidationKey + "=@" + p1file}, nil, "without " + EnvSigningKey},
		{"garbage", []string{EnvSigningKey + "=not a key"}, nil, EnvSigningKey + ": malformed key PEM"},
		{"small key", []string{EnvWorkflowSigningKey + "=" + string(pkcs1PEM(small(t)))}, nil, EnvWorkflowSigningKey + ": RSA key size not accepted"},
		{"EC key", []string{EnvSigningKey + "=" + string(pkcs8PEM(t, ecKey(t)))}, nil, "not an RSA private key"},
		{"loose @file", []string{EnvSigningKey + "=@" + loose}, nil, "chmod 600 " + loose},
		{"missing @file", []string{EnvSigningKey + "=@" + filepath.Join(dir, "nope.pem")}, nil, "no such file"},
		{"bare @", []string{EnvSigningKey + "=@"}, nil, "without a file name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := LoadEnv(tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "MII") {
					t.Errorf("error shows key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if o.SigningKeyPEM != nil || o.ValidationKeyPEM != nil {
					t.Fatalf("operator keys from %v", tc.env)
				}
				return
			}
			keysDir := filepath.Join(t.TempDir(), "keys")
			s, err := Open(keysDir, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(s.Validation()); !slices.Equal(got, tc.want) {
				t.Errorf("Validation() = %v, want %v", got, tc.want)
			}
			if !s.Operator() || s.Info()[0].Source != SourceOperator || !s.Info()[0].Created.IsZero() {
				t.Errorf("Info() = %+v", s.Info())
			}
			if _, err := s.Rotate(); !errors.Is(err, ErrOperatorKeys) {
				t.Errorf("Rotate with operator keys: %v", err)
			}
			if _, err := os.Stat(keysDir); !errors.Is(err, os.ErrNotExist) {
				t.Error("Open with operator keys touched the keys directory")
			}
			if _, err := s.PublicJWKS(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOpenOperatorErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		err  error
	}{
		{"validation only", Options{ValidationKeyPEM: pkcs1PEM(poolKey(0))}, nil},
		{"bad signing", Options{SigningKeyPEM: []byte("x")}, ErrMalformed},
		{"bad validation", Options{SigningKeyPEM: pkcs1PEM(poolKey(0)), ValidationKeyPEM: pkcs8PEM(t, ecKey(t))}, ErrNotRSA},
	} {
		_, err := Open("", tc.o)
		if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
}
