package keys

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/jwks"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) // before the first Open
	}{
		{"missing directory", func(*testing.T, string) {}},
		{"empty directory 0700", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"loose directory 0755 is tightened", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"leftover temp file from a crashed write", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "."+statedir.KeysFile+".tmp-12345"), []byte("half a key"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			tc.prepare(t, dir)
			s, err := Open(dir, Options{Now: clock(), Bits: 2048})
			if err != nil {
				t.Fatal(err)
			}
			if got := mode(t, dir); got != 0o700 {
				t.Errorf("dir mode %04o, want 0700", got)
			}
			if got := mode(t, filepath.Join(dir, statedir.KeysFile)); got != 0o600 {
				t.Errorf("key file mode %04o, want 0600", got)
			}
			sk := s.Signing()
			if sk.ID == "" || sk.Private == nil || !sk.Created.Equal(t0) || sk.Bits() != 2048 {
				t.Errorf("signing key %s created %v bits %d", sk.ID, sk.Created, sk.Bits())
			}
			if v := s.Validation(); len(v) != 1 || v[0].ID != sk.ID {
				t.Errorf("Validation() = %v, want only the signing key", ids(v))
			}
			info := s.Info()
			want := []KeyInfo{{ID: sk.ID, Role: RoleSigning, Created: t0, Bits: 2048, Source: SourceGenerated}}
			if !slices.Equal(info, want) {
				t.Errorf("Info() = %+v, want %+v", info, want)
			}
			data, _ := os.ReadFile(filepath.Join(dir, statedir.KeysFile))
			for _, h := range []string{"-----BEGIN PRIVATE KEY-----", "Role: signing", "Key-Id: " + sk.ID, "Created: 2026-03-01T12:00:00Z"} {
				if !bytes.Contains(data, []byte(h)) {
					t.Errorf("key file lacks %q:\n%s", h, data)
				}
			}

			// Reopen: same key, nothing regenerated.
			before, _ := os.ReadFile(filepath.Join(dir, statedir.KeysFile))
			s2, err := Open(dir, Options{Now: clock(), Bits: 2048})
			if err != nil {
				t.Fatal(err)
			}
			if got := s2.Signing(); got.ID != sk.ID || !got.Created.Equal(t0) || !got.Private.Equal(sk.Private) {
				t.Errorf("reopened signing key %s created %v, want %s", got.ID, got.Created, sk.ID)
			}
			after, _ := os.ReadFile(filepath.Join(dir, statedir.KeysFile))
			if !bytes.Equal(before, after) {
				t.Error("reopening rewrote the key file")
			}
		})
	}
}

func TestOpenBits(t *testing.T) {
	for _, tc := range []struct {
		bits, want int
		err        error
	}{
		{0, DefaultBits, nil},
		{2048, 2048, nil},
		{4096, 4096, nil},
		{1024, 0, ErrKeySize},
		{16384, 0, ErrKeySize},
	} {
		_, err := Open(filepath.Join(t.TempDir(), "keys"), Options{Bits: tc.bits})
		if !errors.Is(err, tc.err) {
			t.Errorf("Bits %d: err %v, want %v", tc.bits, err, tc.err)
			continue
		}
		if err == nil && int(lastBits.Load()) != tc.want {
			t.Errorf("Bits %d: generated %d bits, want %d", tc.bits, lastBits.Load(), tc.want)
		}
	}
}

func TestOpenNoGenerate(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "keys")
	if _, err := Open(dir, Options{NoGenerate: true}); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("missing dir: err %v, want ErrNoKeys", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NoGenerate created %s", dir)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{NoGenerate: true}); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("empty dir: err %v, want ErrNoKeys", err)
	}
	if _, err := os.Stat(filepath.Join(dir, statedir.KeysFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("NoGenerate wrote a key file")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{NoGenerate: true})
	if err != nil || s2.Signing().ID != s.Signing().ID {
		t.Fatalf("NoGenerate after generation: %v", err)
	}
}

func TestRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Open(dir, Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	k0 := s.Signing()
	steps := []struct {
		name           string
		wantCreated    time.Time
		wantPrevCreate time.Time
	}{
		{"first rotation keeps the generated key for validation", t0.Add(time.Hour), t0},
		{"second rotation drops the first key", t0.Add(2 * time.Hour), t0.Add(time.Hour)},
		{"third rotation", t0.Add(3 * time.Hour), t0.Add(2 * time.Hour)},
	}
	prev := k0
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			k, err := s.Rotate()
			if err != nil {
				t.Fatal(err)
			}
			if k.ID == prev.ID || s.Signing().ID != k.ID || !k.Created.Equal(st.wantCreated) {
				t.Fatalf("Rotate() = %s created %v; Signing() = %s; previous %s", k.ID, k.Created, s.Signing().ID, prev.ID)
			}
			want := []string{k.ID, prev.ID}
			if got := ids(s.Validation()); !slices.Equal(got, want) {
				t.Errorf("Validation() = %v, want %v", got, want)
			}
			info := s.Info()
			if len(info) != 2 || info[0].Role != RoleSigning || info[1].Role != RoleValidation ||
				!info[1].Created.Equal(st.wantPrevCreate) || info[1].ID != prev.ID {
				t.Errorf("Info() = %+v", info)
			}
			// Persisted: a new Store sees the same pair and nothing older.
			s2, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(s2.Validation()); !slices.Equal(got, want) {
				t.Errorf("reopened Validation() = %v, want %v", got, want)
			}
			if got := mode(t, filepath.Join(dir, statedir.KeysFile)); got != 0o600 {
				t.Errorf("key file mode %04o after rotation", got)
			}
			data, _ := os.ReadFile(filepath.Join(dir, statedir.KeysFile))
			if n := bytes.Count(data, []byte("-----BEGIN PRIVATE KEY-----")); n != 2 {
				t.Errorf("key file holds %d keys, want 2", n)
			}
			if k0.ID != prev.ID && bytes.Contains(data, []byte(k0.ID)) {
				t.Error("the first key is still in the file after two rotations")
			}
			prev = k
		})
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != statedir.KeysFile && e.Name() != lockName {
			t.Errorf("unexpected file %s in the keys directory", e.Name())
		}
	}
}

// TestRotateAcrossStores: a rotation by another process (another Store on
// the same directory) is not undone by this one's next rotation.
func TestRotateAcrossStores(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	a, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ka, err := a.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(b.Validation()), []string{kb.ID, ka.ID}; !slices.Equal(got, want) {
		t.Errorf("after a then b rotated: %v, want %v", got, want)
	}
}

// TestTokenSurvivesRotation: a token signed before a rotation verifies
// with Validation() and PublicJWKS() after it, and not after the next one.
func TestTokenSurvivesRotation(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "keys"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sign := func() string {
		k := s.Signing()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": "gitlab-ai-gateway", "aud": "gitlab-ai-gateway", "sub": "1",
			"exp": time.Now().Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = k.ID
		out, err := tok.SignedString(k.Private)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	verify := func(tok string) error {
		_, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
			kid, _ := tk.Header["kid"].(string)
			for _, k := range s.Validation() {
				if k.ID == kid {
					return &k.Private.PublicKey, nil
				}
			}
			return nil, errors.New("unknown kid " + kid)
		}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience("gitlab-ai-gateway"), jwt.WithExpirationRequired())
		return err
	}
	jwksKids := func() []string {
		doc, err := s.PublicJWKS()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(doc, []byte(`"d"`)) || bytes.Contains(doc, []byte(`"p"`)) {
			t.Fatalf("JWKS carries private members: %s", doc)
		}
		var set struct {
			Keys []struct{ Kid, Alg, Use, Kty string } `json:"keys"`
		}
		if err := json.Unmarshal(doc, &set); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range set.Keys {
			if k.Alg != "RS256" || k.Use != "sig" || k.Kty != "RSA" {
				t.Errorf("JWKS key %+v", k)
			}
			out = append(out, k.Kid)
		}
		return out
	}

	old := sign()
	k0 := s.Signing().ID
	if err := verify(old); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	k1, err := s.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(old); err != nil {
		t.Errorf("token signed before the rotation does not verify after it: %v", err)
	}
	if got := jwksKids(); !slices.Equal(got, []string{k1.ID, k0}) {
		t.Errorf("JWKS kids %v, want %v", got, []string{k1.ID, k0})
	}
	if err := verify(sign()); err != nil {
		t.Errorf("token signed after the rotation: %v", err)
	}
	if _, err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := verify(old); err == nil {
		t.Error("token signed two rotations ago still verifies")
	}
}

func TestOpenRefuses(t *testing.T) {
	// A valid file to corrupt.
	good := func(t *testing.T) (string, []byte) {
		dir := filepath.Join(t.TempDir(), "keys")
		s, err := Open(dir, Options{Now: clock()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Rotate(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, statedir.KeysFile))
		if err != nil {
			t.Fatal(err)
		}
		return dir, data
	}
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string, data []byte)
		err     error
		msg     string
	}{
		{"mode 0644", func(t *testing.T, p string, _ []byte) { chmod(t, p, 0o644) }, ErrInsecureMode, "chmod 600 "},
		{"mode 0640", func(t *testing.T, p string, _ []byte) { chmod(t, p, 0o640) }, ErrInsecureMode, "chmod 600 "},
		{"mode 0604", func(t *testing.T, p string, _ []byte) { chmod(t, p, 0o604) }, ErrInsecureMode, "chmod 600 "},
		{"garbage", func(t *testing.T, p string, _ []byte) { write(t, p, []byte("not a key\n")) }, ErrMalformed, "not replaced"},
		{"empty", func(t *testing.T, p string, _ []byte) { write(t, p, nil) }, ErrMalformed, "not replaced"},
		{"truncated", func(t *testing.T, p string, d []byte) { write(t, p, d[:len(d)/3]) }, ErrMalformed, "not replaced"},
		{"Key-Id does not match", func(t *testing.T, p string, d []byte) {
			write(t, p, bytes.Replace(d, []byte("Key-Id: "), []byte("Key-Id: x"), 1))
		}, ErrMalformed, "does not match"},
		{"roles swapped", func(t *testing.T, p string, d []byte) {
			d = bytes.Replace(d, []byte("Role: signing"), []byte("Role: tmp"), 1)
			d = bytes.Replace(d, []byte("Role: validation"), []byte("Role: signing"), 1)
			write(t, p, bytes.Replace(d, []byte("Role: tmp"), []byte("Role: validation"), 1))
		}, ErrMalformed, "Role"},
		{"three keys", func(t *testing.T, p string, d []byte) {
			i := bytes.Index(d[1:], []byte("-----BEGIN")) + 1
			write(t, p, append(slices.Clone(d), d[i:]...))
		}, ErrMalformed, "3 PEM blocks"},
		{"bad Created", func(t *testing.T, p string, d []byte) {
			write(t, p, bytes.Replace(d, []byte("Created: 2026"), []byte("Created: yesterday 2026"), 1))
		}, ErrMalformed, "Created"},
		{"small key", func(t *testing.T, p string, _ []byte) {
			write(t, p, withHeaders(t, pkcs8PEM(t, small(t)), "signing", "x"))
		}, ErrKeySize, "less than 2048"},
		{"EC key", func(t *testing.T, p string, _ []byte) {
			write(t, p, withHeaders(t, pkcs8PEM(t, ecKey(t)), "signing", "x"))
		}, ErrNotRSA, "ECDSA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, data := good(t)
			path := filepath.Join(dir, statedir.KeysFile)
			tc.corrupt(t, path, data)
			before, _ := os.ReadFile(path)
			_, err := Open(dir, Options{})
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Open: %v; want %v mentioning %q", err, tc.err, tc.msg)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY-----") || strings.Contains(err.Error(), "MII") {
				t.Errorf("error shows key material: %v", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Error("Open replaced a key file it refused")
			}
		})
	}
}

// TestRotateRefusesUnreadableFile: Rotate never overwrites a key file it
// cannot read.
func TestRotateRefusesUnreadableFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, statedir.KeysFile)
	chmod(t, path, 0o644)
	if _, err := s.Rotate(); !errors.Is(err, ErrInsecureMode) {
		t.Errorf("Rotate with a 0644 key file: %v", err)
	}
	chmod(t, path, 0o600)
	write(t, path, []byte("junk"))
	if _, err := s.Rotate(); !errors.Is(err, ErrMalformed) {
		t.Errorf("Rotate with a junk key file: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "junk" {
		t.Error("Rotate overwrote an unreadable key file")
	}
}

// TestCrashDuringRotation simulates a crash after statedir.WriteFile wrote
// its temporary file but before the rename: the old pair is still in force
// and the next rotation clears the leftover.
func TestCrashDuringRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := s.Signing().ID
	// What the interrupted rotation had written: a complete new pair, and
	// a half-written one from an even earlier crash.
	next, err := encodeFile(&snapshot{signing: Key{ID: mustID(t, poolKey(7)), Private: poolKey(7), Created: t0}, previous: ptr(s.Signing())})
	if err != nil {
		t.Fatal(err)
	}
	tmp1 := filepath.Join(dir, "."+statedir.KeysFile+".tmp-111")
	tmp2 := filepath.Join(dir, "."+statedir.KeysFile+".tmp-222")
	write(t, tmp1, next)
	write(t, tmp2, next[:100])
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open with leftovers: %v", err)
	}
	if got := ids(s2.Validation()); !slices.Equal(got, []string{old}) {
		t.Errorf("after the crash: %v, want only %s", got, old)
	}
	if _, err := s2.Rotate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tmp1, tmp2} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Rotate left %s behind", p)
		}
	}
}

// TestConcurrentReadersDuringRotate runs under -race: readers always see a
// consistent pair while rotations happen.
func TestConcurrentReadersDuringRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(dir, Options{}) // another "process" rotating the same directory
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := s.Signing()
				if k.Private == nil || k.ID == "" {
					t.Error("Signing() returned an empty key")
					return
				}
				v := s.Validation()
				if len(v) == 0 || len(v) > 2 || (len(v) == 2 && v[0].ID == v[1].ID) {
					t.Errorf("Validation() = %v", ids(v))
					return
				}
				if len(s.Info()) != len(v) && len(s.Info()) == 0 {
					t.Error("Info() empty")
					return
				}
			}
		})
	}
	var rotators sync.WaitGroup
	for _, st := range []*Store{s, s, other} {
		rotators.Go(func() {
			for range 3 {
				if _, err := st.Rotate(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	rotators.Wait()
	close(stop)
	readers.Wait()
	// The file holds a consistent pair that a new Store loads.
	s3, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s3.Validation()) != 2 {
		t.Errorf("after concurrent rotations: %v", ids(s3.Validation()))
	}
	if _, err := s.PublicJWKS(); err != nil {
		t.Error(err)
	}
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

// write replaces p's content keeping its mode.
func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func withHeaders(t testing.TB, p []byte, role, id string) []byte {
	t.Helper()
	return bytes.Replace(p, []byte("-----\n"), []byte("-----\nRole: "+role+"\nKey-Id: "+id+"\nCreated: 2026-01-01T00:00:00Z\n\n"), 1)
}

func mustID(t *testing.T, k interface{ Public() crypto.PublicKey }) string {
	t.Helper()
	id, err := jwks.Thumbprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ptr[T any](v T) *T { return &v }
