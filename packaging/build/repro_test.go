package build_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Two builds of the same input give the same bytes, in different output
// directories (so no path leaks in) and at different wall-clock times.
func TestReproducible(t *testing.T) {
	b := packages(t)
	for _, format := range []string{"deb", "rpm"} {
		t.Run(format, func(t *testing.T) {
			x, err := os.ReadFile(b.v1[format])
			if err != nil {
				t.Fatal(err)
			}
			y, err := os.ReadFile(b.v1again[format])
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(b.v1[format]) != filepath.Base(b.v1again[format]) {
				t.Errorf("file names differ: %s, %s", b.v1[format], b.v1again[format])
			}
			if !bytes.Equal(x, y) {
				t.Errorf("%s: two builds differ (%d and %d bytes)", format, len(x), len(y))
			}
		})
	}
}
