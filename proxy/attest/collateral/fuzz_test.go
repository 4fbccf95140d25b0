package collateral

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadBundle feeds arbitrary bytes to Parse: it must never panic, and a
// bundle it accepts must survive Marshal and Parse unchanged.
func FuzzLoadBundle(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"format":"duo-confidential-collateral/1","items":[]}`))
	f.Add([]byte(`{"format":"duo-confidential-collateral/1","items":[{"url":"https://a/","body":"","fetched_at":"2026-01-01T00:00:00Z","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		out, err := b.Marshal()
		if err != nil {
			t.Fatalf("accepted bundle does not marshal: %v", err)
		}
		b2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of our own output: %v\n%s", err, out)
		}
		out2, _ := b2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
		for _, it := range b.Items() {
			_ = Describe(it) // body parsers must not panic on arbitrary bodies
		}
	})
}
