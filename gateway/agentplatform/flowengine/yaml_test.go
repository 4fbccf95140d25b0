package flowengine

import (
	"encoding/json"
	"testing"

	"go.yaml.in/yaml/v3"
)

func yamlToJSON(t *testing.T, s string) []byte {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
