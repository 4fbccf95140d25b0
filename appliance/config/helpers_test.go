package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exampleKeys maps each leaf key path of the example config to the comment
// written above it.
func exampleKeys(t *testing.T) map[string]string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(ExampleConfig, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := append(append([]string(nil), path...), k.Value)
			if v.Kind == yaml.MappingNode {
				walk(v, p)
				continue
			}
			out[strings.Join(p, ".")] = k.HeadComment + k.LineComment
		}
	}
	walk(doc.Content[0], nil)
	return out
}
