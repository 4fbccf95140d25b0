package charttest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test.
var chartDir = filepath.Join("..", "duo-confidential")

// kubeVersion is the oldest Kubernetes the chart supports (Chart.yaml
// kubeVersion): preStop sleep is GA from 1.30.
const kubeVersion = "v1.30.0"

// loadChart loads the chart from its directory, as `helm template DIR` does.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// render is `helm template duo CHART -n duo-system --kube-version ...` with
// the given values (merged over values.yaml by Helm).
func render(t *testing.T, values map[string]any) (string, error) {
	t.Helper()
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun, inst.DryRunOption, inst.ClientOnly, inst.Replace = true, "true", true, true
	inst.ReleaseName, inst.Namespace = "duo", "duo-system"
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	inst.KubeVersion = kv
	rel, err := inst.Run(loadChart(t), values)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// object is one rendered manifest, decoded.
type object struct {
	Kind, Name string
	Obj        runtime.Object // the typed Kubernetes object, or nil for custom resources
	Raw        []byte         // the YAML as rendered
}

// strictDecoder decodes YAML into the registered Kubernetes types and fails
// on unknown or duplicate fields (what `kubectl apply --validate=strict`
// and the API server's strict field validation refuse).
var strictDecoder = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// customKinds are the custom resources the chart renders, each with our
// own mirror of the fields it uses (their API modules are too heavy to pull
// in for three kinds); decoded strictly too.
var customKinds = map[schema.GroupVersionKind]func() any{
	{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}:          func() any { return &certificate{} },
	{Group: "cert-manager.io", Version: "v1", Kind: "Issuer"}:               func() any { return &issuer{} },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: func() any { return &serviceMonitor{} },
}

// decodeAll splits a manifest and decodes every document strictly.
func decodeAll(t *testing.T, manifest string) []object {
	t.Helper()
	var out []object
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		gv, err := schema.ParseGroupVersion(head.APIVersion)
		if err != nil {
			t.Fatalf("%s %s: apiVersion: %v", head.Kind, head.Metadata.Name, err)
		}
		o := object{Kind: head.Kind, Name: head.Metadata.Name, Raw: []byte(doc)}
		if mk, ok := customKinds[gv.WithKind(head.Kind)]; ok {
			if err := yaml.UnmarshalStrict([]byte(doc), mk()); err != nil {
				t.Errorf("%s %s: %v", head.Kind, head.Metadata.Name, err)
			}
			out = append(out, o)
			continue
		}
		obj, _, err := strictDecoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Errorf("%s %s does not decode strictly into the Kubernetes API types: %v", head.Kind, head.Metadata.Name, err)
			continue
		}
		o.Obj = obj
		out = append(out, o)
	}
	return out
}

// find returns the object of kind and name, failing the test if absent.
func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			return o
		}
	}
	var have bytes.Buffer
	for _, o := range objs {
		fmt.Fprintf(&have, " %s/%s", o.Kind, o.Name)
	}
	t.Fatalf("no %s %s rendered; have:%s", kind, name, have.String())
	return object{}
}

// has reports whether an object of kind and name was rendered.
func has(objs []object, kind, name string) bool {
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
}
