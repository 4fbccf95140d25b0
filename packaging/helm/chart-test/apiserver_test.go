package charttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"sigs.k8s.io/yaml"
)

// crdSources are the custom resource definitions the chart's optional
// objects need, taken as published by their projects (data only): the
// module versions are downloaded by .ci/run (`go mod download`) and read
// from the module cache here, never from the network.
var crdSources = []struct{ module, file string }{
	{"github.com/cert-manager/cert-manager@v1.21.2", "deploy/crds/cert-manager.io_certificates.yaml"},
	{"github.com/cert-manager/cert-manager@v1.21.2", "deploy/crds/cert-manager.io_issuers.yaml"},
	{"github.com/prometheus-operator/prometheus-operator@v0.85.0", "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"},
}

// TestChartOnAPIServer installs every case of the values matrix into a
// real kube-apiserver (built from k8s.io/kubernetes, in process, on an
// embedded etcd, loopback only), each in its own namespace that enforces
// the restricted Pod Security Standard: every object is server-side
// applied with strict field validation (unknown or duplicate fields fail,
// custom resources against their projects' published CRDs), the API
// server must answer without a single warning, and a pod made from the
// StatefulSet's template must pass the API server's own admission
// (PodSecurity enforce, ServiceAccount) in a dry run. No controllers run,
// so nothing is scheduled.
func TestChartOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped under -short")
	}
	ctx := t.Context()
	warn := &warningLog{}
	cfg := startAPIServer(t)
	cfg.WarningHandler = warn
	installCRDs(ctx, t, cfg)

	kube := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))

	// The API server really enforces: a privileged pod is refused in a
	// namespace labelled restricted (otherwise the checks below prove
	// nothing).
	probeNS := createRestrictedNamespace(ctx, t, kube, "duo-probe")
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "privileged"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "x", SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)}}},
	}}
	if _, err := kube.CoreV1().Pods(probeNS).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
		t.Fatal("the API server accepted a privileged pod in a restricted namespace: PodSecurity admission is not enforcing")
	}
	// And strict field validation refuses unknown fields, for built-in
	// kinds and for custom resources checked against the published CRDs.
	for _, doc := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndataa:\n  a: b\n",
		"apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: typo\nspec:\n  secretNme: x\n  issuerRef:\n    name: y\n",
	} {
		if err := applyStrict(ctx, dyn, mapper, probeNS, object{Raw: []byte(doc)}); err == nil {
			t.Fatalf("the API server accepted an unknown field:\n%s", doc)
		}
	}

	for i, c := range matrix() {
		t.Run(c.name, func(t *testing.T) {
			manifest, err := render(t, c.values)
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			ns := createRestrictedNamespace(ctx, t, kube, fmt.Sprintf("duo-case-%d", i))
			warn.reset()
			for _, o := range decodeAll(t, manifest) {
				if err := applyStrict(ctx, dyn, mapper, ns, o); err != nil {
					t.Errorf("%s %s: %v", o.Kind, o.Name, err)
				}
			}
			sts, err := kube.AppsV1().StatefulSets(ns).Get(ctx, "duo-duo-confidential", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("read back the StatefulSet: %v", err)
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != c.replicas {
				t.Errorf("the API server stored %v replicas, want %d", sts.Spec.Replicas, c.replicas)
			}
			admitPodFromTemplate(ctx, t, kube, ns, sts)
			for _, w := range warn.take() {
				t.Errorf("the API server warned: %s", w)
			}
		})
	}
}

// startAPIServer starts an embedded etcd and kube-apiserver on loopback
// for the test and returns an admin client config.
func startAPIServer(t *testing.T) *rest.Config {
	t.Helper()
	dir := t.TempDir()
	ec := embed.NewConfig()
	ec.Dir = filepath.Join(dir, "etcd")
	ec.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	ec.LogLevel = "error"
	loopback := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{loopback}, []url.URL{loopback}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{loopback}, []url.URL{loopback}
	ec.InitialCluster = ec.Name + "=" + loopback.String()
	etcd, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(etcd.Close)
	select {
	case <-etcd.Server.ReadyNotify():
	case err := <-etcd.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("etcd not ready after a minute")
	}
	sc := storagebackend.NewDefaultConfig("/registry", nil)
	sc.Transport.ServerList = []string{"http://" + etcd.Clients[0].Addr().String()}
	s, err := kubeapiservertesting.StartTestServer(t, nil, nil, sc)
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(s.TearDownFn)
	return rest.CopyConfig(s.ClientConfig)
}

// installCRDs creates the published CRDs and waits until they serve.
func installCRDs(ctx context.Context, t *testing.T, cfg *rest.Config) {
	t.Helper()
	client := apiextensionsclient.NewForConfigOrDie(cfg)
	for _, src := range crdSources {
		raw, err := os.ReadFile(filepath.Join(moduleDir(t, src.module), src.file))
		if err != nil {
			t.Fatalf("read %s from %s: %v", src.file, src.module, err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
			t.Fatalf("%s: %v", src.file, err)
		}
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
		deadline := time.Now().Add(time.Minute)
		for !established(ctx, client, crd.Name) {
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established after a minute", crd.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// established reports whether the CRD named name serves.
func established(ctx context.Context, client apiextensionsclient.Interface, name string) bool {
	crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// moduleDir finds a module version in the module cache only (GOPROXY=off:
// the test never downloads); .ci/run downloads it first.
func moduleDir(t *testing.T, modVersion string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	var m struct{ Dir, Error string }
	_ = json.Unmarshal(out, &m)
	if err != nil || m.Dir == "" {
		t.Fatalf("%s is not in the module cache (%v %s): run `go mod download %s` (the CRDs are read from it)", modVersion, err, m.Error, modVersion)
	}
	return m.Dir
}

// createRestrictedNamespace creates a namespace that enforces, warns and
// audits the restricted Pod Security Standard (latest).
func createRestrictedNamespace(ctx context.Context, t *testing.T, kube kubernetes.Interface, name string) string {
	t.Helper()
	labels := map[string]string{}
	for _, mode := range []string{"enforce", "warn", "audit"} {
		labels["pod-security.kubernetes.io/"+mode] = "restricted"
		labels["pod-security.kubernetes.io/"+mode+"-version"] = "latest"
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// applyStrict server-side applies one rendered object into ns, as
// `kubectl apply --server-side --validate=strict` does.
func applyStrict(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, ns string, o object) error {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(o.Raw, &u.Object); err != nil {
		return err
	}
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("the API server does not serve %s: %w", gvk, err)
	}
	u.SetNamespace(ns)
	body, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	_, err = dyn.Resource(m.Resource).Namespace(ns).Patch(ctx, u.GetName(), types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: "duo-chart-test", Force: ptr(true), FieldValidation: "Strict"})
	if err != nil {
		return fmt.Errorf("server-side apply: %w", err)
	}
	return nil
}

// admitPodFromTemplate creates, as a dry run, the pod the StatefulSet
// controller would create for ordinal 0, so the API server's pod admission
// (PodSecurity enforce, ServiceAccount) and validation see it.
func admitPodFromTemplate(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns string, sts *appsv1.StatefulSet) {
	t.Helper()
	tmpl := sts.Spec.Template
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sts.Name + "-0", Namespace: ns, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec: *tmpl.Spec.DeepCopy()}
	pod.Spec.Hostname, pod.Spec.Subdomain = pod.Name, sts.Spec.ServiceName
	// The controller turns each volume claim template into a claim named
	// <template>-<pod>; the pod refers to it by that name.
	for _, pvc := range sts.Spec.VolumeClaimTemplates {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: pvc.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name + "-" + pod.Name}}})
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
		t.Errorf("the API server refused the StatefulSet's pod: %v", err)
	}
}

// warningLog collects the API server's Warning headers.
type warningLog struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeader records one warning (rest.WarningHandler).
func (w *warningLog) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || strings.TrimSpace(text) == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// reset forgets what was seen.
func (w *warningLog) reset() { w.take() }

// take returns and forgets what was seen.
func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }
