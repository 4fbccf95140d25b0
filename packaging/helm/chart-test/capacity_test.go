package charttest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// operationsDoc holds the capacity model the chart's default resources
// come from.
var operationsDoc = filepath.Join("..", "..", "..", "docs", "operations.md")

// chartDefaults is the marker under the capacity model's arithmetic that
// names the requests and limits it arrives at.
var chartDefaults = regexp.MustCompile(`<!-- chart-defaults: requests\.cpu=(\S+) requests\.memory=(\S+) limits\.memory=(\S+) -->`)

// TestDefaultResourcesFollowTheCapacityModel: the chart's default
// requests and limits are the ones docs/operations.md's capacity model
// arrives at, so neither changes without the other.
func TestDefaultResourcesFollowTheCapacityModel(t *testing.T) {
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	m := chartDefaults.FindStringSubmatch(string(doc))
	if m == nil {
		t.Fatalf("%s has no %q marker under its capacity model", operationsDoc, "<!-- chart-defaults: … -->")
	}
	manifest, err := render(t, baseValues())
	if err != nil {
		t.Fatal(err)
	}
	sts := find(t, decodeAll(t, manifest), "StatefulSet", "duo-duo-confidential").Obj.(*appsv1.StatefulSet)
	r := sts.Spec.Template.Spec.Containers[0].Resources
	for _, c := range []struct {
		name string
		got  *resource.Quantity
		doc  string
	}{
		{"requests.cpu", r.Requests.Cpu(), m[1]},
		{"requests.memory", r.Requests.Memory(), m[2]},
		{"limits.memory", r.Limits.Memory(), m[3]},
	} {
		want, err := resource.ParseQuantity(c.doc)
		if err != nil {
			t.Fatalf("the capacity model's %s %q: %v", c.name, c.doc, err)
		}
		if c.got.Cmp(want) != 0 {
			t.Errorf("the chart's default %s is %s, the capacity model in %s says %s", c.name, c.got, strings.TrimPrefix(operationsDoc, "../../../"), c.doc)
		}
	}
}
