package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestTransitionDigest(t *testing.T) {
	m1, m2 := []byte("manifest one"), []byte("manifest two")
	h1 := sha256.Sum256(m1)
	var zero [32]byte
	t1 := sha256.Sum256(append(h1[:], zero[:]...))
	if got := TransitionDigest([][]byte{m1}); got != t1 {
		t.Fatalf("single manifest: %x, want %x", got, t1)
	}
	h2 := sha256.Sum256(m2)
	t2 := sha256.Sum256(append(h2[:], t1[:]...))
	if got := TransitionDigest([][]byte{m1, m2}); got != t2 {
		t.Fatalf("two manifests: %x, want %x", got, t2)
	}
}

// TestExpectedReportDataVector pins the binding with a fixed vector so a
// refactor cannot change it silently.
func TestExpectedReportDataVector(t *testing.T) {
	nonce := make([]byte, 32)
	for i := range nonce {
		nonce[i] = byte(i)
	}
	td := TransitionDigest([][]byte{[]byte(`{"Policies":{}}`)})
	got := ExpectedReportData(nonce, td, []byte("root-ca-pem"), []byte("mesh-ca-pem"))
	rh := sha256.Sum256([]byte("root-ca-pem"))
	mh := sha256.Sum256([]byte("mesh-ca-pem"))
	in := append(append(append(append([]byte{}, nonce...), td[:]...), rh[:]...), mh[:]...)
	want := sha256.Sum256(in)
	if hex.EncodeToString(got[:32]) != hex.EncodeToString(want[:]) {
		t.Fatalf("report data %x, want %x", got[:32], want)
	}
	for _, b := range got[32:] {
		if b != 0 {
			t.Fatal("report data bytes 32..63 are not zero")
		}
	}
}

func TestParseDocErrors(t *testing.T) {
	valid := map[string]any{
		"version":             "v1",
		"raw_attestation_doc": []byte{1, 2, 3},
		"manifests":           [][]byte{[]byte("{}")},
		"root_ca":             []byte("x"),
		"mesh_ca":             []byte("y"),
	}
	enc := func(mut func(map[string]any)) []byte {
		m := map[string]any{}
		for k, v := range valid {
			m[k] = v
		}
		mut(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"not json", []byte("{"), "decode"},
		{"trailing", append(enc(func(map[string]any) {}), []byte("{}")...), "trailing"},
		{"no evidence", enc(func(m map[string]any) { delete(m, "raw_attestation_doc") }), "raw_attestation_doc"},
		{"no manifests", enc(func(m map[string]any) { m["manifests"] = [][]byte{} }), "manifest"},
		{"no mesh CA", enc(func(m map[string]any) { delete(m, "mesh_ca") }), "mesh_ca"},
		{"unknown evidence type", enc(func(m map[string]any) { m["attestation_type"] = []int{1, 2, 3} }), "unsupported evidence type"},
		{"garbage evidence", enc(func(map[string]any) {}), "raw_attestation_doc"},
		{"oversized", append([]byte(`{"version":"`), append([]byte(strings.Repeat("a", MaxDocSize)), `"}`...)...), "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDoc(tc.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ClassMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParseDoc(f *testing.F) {
	f.Add([]byte(`{"version":"v1","raw_attestation_doc":"AQID","manifests":["e30="],"root_ca":"eA==","mesh_ca":"eQ=="}`))
	f.Add([]byte(`{"attestation_type":[1,3,9901,2,2],"raw_attestation_doc":"","manifests":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDoc(b)
		if err != nil {
			if ClassOf(err) != ClassMalformed {
				t.Fatalf("error of class %q, want malformed: %v", ClassOf(err), err)
			}
			return
		}
		if (d.TDX == nil) == (d.SNP == nil) {
			t.Fatal("parsed doc must carry exactly one kind of evidence")
		}
		if _, err := d.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}
