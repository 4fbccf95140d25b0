package flowconfig

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// BenchmarkParse parses and validates a three-component flow; the
// baseline BenchmarkYAMLOnly only decodes the same YAML, so the difference
// is the validator's cost per inline flowConfig.
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/valid/review_like.yaml")
	if err != nil {
		b.Fatal(err)
	}
	r := testRegistry(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, Options{Prompts: r}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkYAMLOnly is BenchmarkParse's baseline.
func BenchmarkYAMLOnly(b *testing.B) {
	data, err := os.ReadFile("testdata/valid/review_like.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			b.Fatal(err)
		}
	}
}
