package charttest

import (
	"fmt"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// baseValues are the values every install needs (image, GitLab, the API key
// and a model).
func baseValues() map[string]any {
	return map[string]any{
		"image":       map[string]any{"repository": "registry.example/duo-confidential", "tag": "1.2.3"},
		"gitlab":      map[string]any{"url": "https://gitlab.example.com"},
		"privatemode": map[string]any{"apiKey": "test-api-key"},
		"gateway":     map[string]any{"models": map[string]any{"default": "test-model"}},
	}
}

// with returns base with patch merged in (patch wins, maps merged deeply).
func with(patch map[string]any) map[string]any {
	return chartutil.CoalesceTables(patch, baseValues())
}

// valuesCase is one point of the values matrix: the values, the Secrets and
// ConfigMaps the user (or cert-manager) provides, and what must be rendered.
type valuesCase struct {
	name     string
	values   map[string]any
	replicas int32
	external map[string]bool // "Secret/name" or "ConfigMap/name" made outside the chart
	check    func(t *testing.T, objs []object, cfg map[string]any)
}

var netpol = map[string]any{"enabled": true, "egress": map[string]any{
	"privatemodeCIDRs": []any{"203.0.113.10/32"}, "gitlabCIDRs": []any{"10.20.0.0/16"}, "collateralCIDRs": []any{"198.51.100.0/24"},
}, "ingress": map[string]any{"gitlabPeers": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "gitlab"}}}}}}

func matrix() []valuesCase {
	return []valuesCase{{
		name: "local CA, 1 replica", values: with(map[string]any{"replicaCount": 1}), replicas: 1,
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			find(t, objs, "Secret", "duo-duo-confidential-ca")
			find(t, objs, "Secret", "duo-duo-confidential-tls")
			find(t, objs, "Secret", "duo-duo-confidential-gateway-keys")
			if has(objs, "PodDisruptionBudget", "duo-duo-confidential") {
				t.Error("a PDB for one replica blocks every node drain")
			}
			if has(objs, "Service", "duo-duo-confidential-admin") {
				t.Error("the admin UI is exposed by default")
			}
			if got := dig(cfg, "admin", "listen"); got != "127.0.0.1:5053" {
				t.Errorf("admin.listen %v, want loopback by default", got)
			}
			// `gitlab connect` from any replica names the Services, not a pod.
			if dig(cfg, "gitlab_admin", "gateway_url") != "https://duo-duo-confidential.duo-system.svc:443" ||
				dig(cfg, "gitlab_admin", "agent_platform_address") != "duo-duo-confidential-agent-platform.duo-system.svc:50052" {
				t.Errorf("gitlab_admin: %v", cfg["gitlab_admin"])
			}
		},
	}, {
		name: "local CA, 3 replicas, network policy", values: with(map[string]any{"replicaCount": 3, "networkPolicy": netpol}), replicas: 3,
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			find(t, objs, "PodDisruptionBudget", "duo-duo-confidential")
			np := find(t, objs, "NetworkPolicy", "duo-duo-confidential").Obj.(*networkingv1.NetworkPolicy)
			if n := len(np.Spec.Egress); n != 4 {
				t.Errorf("%d egress rules, want DNS, Privatemode, GitLab, collateral", n)
			}
		},
	}, {
		name: "cert-manager issuer", replicas: 2,
		values:   with(map[string]any{"tls": map[string]any{"mode": "certManager", "certManager": map[string]any{"issuerRef": map[string]any{"name": "corp", "kind": "ClusterIssuer"}}}}),
		external: map[string]bool{"Secret/duo-duo-confidential-tls": true},
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			find(t, objs, "Certificate", "duo-duo-confidential")
			if has(objs, "Secret", "duo-duo-confidential-ca") || has(objs, "Issuer", "duo-duo-confidential-ca") {
				t.Error("a CA rendered although an issuer was named")
			}
		},
	}, {
		name: "cert-manager with a shared CA Secret", replicas: 2,
		values:   with(map[string]any{"tls": map[string]any{"mode": "certManager", "certManager": map[string]any{"caSecretName": "corp-ca"}}}),
		external: map[string]bool{"Secret/duo-duo-confidential-tls": true},
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			find(t, objs, "Issuer", "duo-duo-confidential-ca")
			find(t, objs, "Certificate", "duo-duo-confidential")
		},
	}, {
		name: "existing secrets, admin on the pod, ServiceMonitor", replicas: 3,
		values: with(map[string]any{
			"replicaCount": 3,
			"tls":          map[string]any{"mode": "existingSecret", "existingSecret": "duo-tls"},
			"privatemode":  map[string]any{"apiKey": "", "existingSecret": "pm-key"},
			"gateway":      map[string]any{"signingKey": map[string]any{"existingSecret": "gw-keys", "validationKeyKey": "validation-key.pem"}},
			"admin": map[string]any{"existingSecret": "admin-hash", "listenOnPod": true, "allowedNetworks": []any{"10.0.0.0/8"},
				"service": map[string]any{"enabled": true}},
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true, "tokenSecret": map[string]any{"name": "scrape-token"}}},
		}),
		external: map[string]bool{"Secret/duo-tls": true, "Secret/pm-key": true, "Secret/gw-keys": true, "Secret/admin-hash": true},
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			for _, n := range []string{"duo-duo-confidential-privatemode", "duo-duo-confidential-gateway-keys", "duo-duo-confidential-tls", "duo-duo-confidential-admin"} {
				if has(objs, "Secret", n) {
					t.Errorf("Secret %s rendered although an existing one was named", n)
				}
			}
			find(t, objs, "ServiceMonitor", "duo-duo-confidential")
			svc := find(t, objs, "Service", "duo-duo-confidential-admin").Obj.(*corev1.Service)
			if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
				t.Errorf("admin Service %s affinity %s, want ClusterIP with ClientIP affinity", svc.Spec.Type, svc.Spec.SessionAffinity)
			}
			if dig(cfg, "gateway", "validation_key_file") == nil || dig(cfg, "admin", "password_file") == nil {
				t.Errorf("config lacks the validation key or the admin password file: %v", cfg)
			}
		},
	}, {
		name: "air-gapped, collateral from a Secret", replicas: 2,
		values: with(map[string]any{"airgapped": map[string]any{"enabled": true, "collateralFrom": map[string]any{"kind": "Secret", "name": "collateral"}},
			"networkPolicy": map[string]any{"enabled": true, "egress": map[string]any{"privatemodeCIDRs": []any{"203.0.113.10/32"}, "gitlabCIDRs": []any{"10.20.0.0/16"}}}}),
		external: map[string]bool{"Secret/collateral": true},
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			if dig(cfg, "attestation", "collateral", "online") != false || dig(cfg, "attestation", "manifest", "mode") != "pinned" {
				t.Errorf("air-gapped config: %v", cfg["attestation"])
			}
			np := find(t, objs, "NetworkPolicy", "duo-duo-confidential").Obj.(*networkingv1.NetworkPolicy)
			if n := len(np.Spec.Egress); n != 3 {
				t.Errorf("%d egress rules, want DNS, Privatemode and GitLab only", n)
			}
		},
	}, {
		name: "no persistence, no Agent Platform", replicas: 2,
		values: with(map[string]any{"persistence": map[string]any{"enabled": false}, "agentPlatform": map[string]any{"enabled": false}}),
		check: func(t *testing.T, objs []object, cfg map[string]any) {
			if has(objs, "Service", "duo-duo-confidential-agent-platform") || dig(cfg, "agent_platform", "listen") != "" {
				t.Errorf("Agent Platform rendered although disabled: %v", cfg["agent_platform"])
			}
			sts := find(t, objs, "StatefulSet", "duo-duo-confidential").Obj.(*appsv1.StatefulSet)
			if len(sts.Spec.VolumeClaimTemplates) != 0 {
				t.Error("volume claims without persistence")
			}
		},
	}}
}

// dig walks nested maps.
func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// renderedConfig is the appliance configuration in the chart's ConfigMap.
func renderedConfig(t *testing.T, objs []object) (string, map[string]any) {
	t.Helper()
	cm := find(t, objs, "ConfigMap", "duo-duo-confidential-config").Obj.(*corev1.ConfigMap)
	text := cm.Data["config.yaml"]
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("config.yaml: %v\n%s", err, text)
	}
	return text, cfg
}

func TestLint(t *testing.T) {
	kv, _ := chartutil.ParseKubeVersion(kubeVersion)
	for _, c := range matrix() {
		l := lint.AllWithKubeVersion(chartDir, c.values, "duo-system", kv)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: helm lint: %s", c.name, m)
			}
		}
	}
}

func TestValuesMatrix(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range matrix() {
		t.Run(c.name, func(t *testing.T) {
			manifest, err := render(t, c.values)
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			objs := decodeAll(t, manifest)
			_, cfg := renderedConfig(t, objs)
			sts := find(t, objs, "StatefulSet", "duo-duo-confidential").Obj.(*appsv1.StatefulSet)
			checkPod(t, eval, sts, c.replicas)
			checkReferences(t, objs, sts, c.external)
			checkServices(t, objs, cfg)
			if c.check != nil {
				c.check(t, objs, cfg)
			}
		})
	}
}

// checkPod: the restricted Pod Security Standard (upstream
// pod-security-admission, latest version), probes, drain timing, replicas.
func checkPod(t *testing.T, eval policy.Evaluator, sts *appsv1.StatefulSet, replicas int32) {
	t.Helper()
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != replicas {
		t.Errorf("replicas %v, want %d", sts.Spec.Replicas, replicas)
	}
	pod := sts.Spec.Template
	for _, r := range eval.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			t.Errorf("restricted Pod Security Standard: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
	if len(pod.Spec.InitContainers) != 1 || strings.Join(pod.Spec.InitContainers[0].Args[:2], " ") != "config check" {
		t.Errorf("init containers %v, want the config check", pod.Spec.InitContainers)
	}
	c := pod.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe == nil || c.StartupProbe == nil {
		t.Errorf("probes: readiness %+v liveness %+v startup %+v", c.ReadinessProbe, c.LivenessProbe, c.StartupProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep: the pod would get SIGTERM while still in the Service's endpoints")
	}
	drain := 0
	for i, a := range c.Args {
		if a == "--drain" && i+1 < len(c.Args) {
			fmt.Sscanf(c.Args[i+1], "%ds", &drain)
		}
	}
	grace := pod.Spec.TerminationGracePeriodSeconds
	if drain == 0 || grace == nil || *grace < c.Lifecycle.PreStop.Sleep.Seconds+int64(drain) {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %ds + drain %ds", grace, c.Lifecycle.PreStop.Sleep.Seconds, drain)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU requests and a memory limit", c.Resources)
	}
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread")
	}
}

// checkReferences: every Secret and ConfigMap a volume names is rendered
// by the chart or provided outside it, and vice versa no volume is missing
// for a mount.
func checkReferences(t *testing.T, objs []object, sts *appsv1.StatefulSet, external map[string]bool) {
	t.Helper()
	vols := map[string]bool{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		vols[v.Name] = true
		var ref string
		switch {
		case v.Secret != nil:
			ref = "Secret/" + v.Secret.SecretName
		case v.ConfigMap != nil:
			ref = "ConfigMap/" + v.ConfigMap.Name
		default:
			continue
		}
		kind, name, _ := strings.Cut(ref, "/")
		if !has(objs, kind, name) && !external[ref] {
			t.Errorf("volume %s names %s, which is neither rendered nor provided", v.Name, ref)
		}
	}
	for _, vc := range sts.Spec.VolumeClaimTemplates {
		vols[vc.Name] = true
	}
	for _, c := range append(sts.Spec.Template.Spec.InitContainers, sts.Spec.Template.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("container %s mounts %s, which no volume provides", c.Name, m.Name)
			}
		}
	}
}

// checkServices: the gateway and (when on) the Agent Platform Services
// select the pods and target ports the container has.
func checkServices(t *testing.T, objs []object, cfg map[string]any) {
	t.Helper()
	sts := find(t, objs, "StatefulSet", "duo-duo-confidential").Obj.(*appsv1.StatefulSet)
	ports := map[string]bool{}
	for _, p := range sts.Spec.Template.Spec.Containers[0].Ports {
		ports[p.Name] = true
	}
	for _, o := range objs {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok {
			continue
		}
		for k, v := range svc.Spec.Selector {
			if sts.Spec.Template.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the pods lack", svc.Name, k, v)
			}
		}
		for _, p := range svc.Spec.Ports {
			if !ports[p.TargetPort.StrVal] {
				t.Errorf("Service %s targets port %q, which the container does not name", svc.Name, p.TargetPort.StrVal)
			}
		}
	}
	find(t, objs, "Service", "duo-duo-confidential")
	if dig(cfg, "agent_platform", "listen") != "" {
		find(t, objs, "Service", "duo-duo-confidential-agent-platform")
	}
}

func TestValuesRefused(t *testing.T) {
	for name, c := range map[string]struct {
		values map[string]any
		want   string
	}{
		"no image":                  {chartutil.CoalesceTables(map[string]any{"image": map[string]any{"repository": ""}}, baseValues()), "image.repository is required"},
		"no GitLab":                 {with(map[string]any{"gitlab": map[string]any{"url": ""}}), "gitlab.url is required"},
		"no API key":                {with(map[string]any{"privatemode": map[string]any{"apiKey": ""}}), "privatemode.apiKey or privatemode.existingSecret"},
		"bad TLS mode":              {with(map[string]any{"tls": map[string]any{"mode": "selfsigned"}}), `tls.mode "selfsigned"`},
		"cert-manager, no issuer":   {with(map[string]any{"tls": map[string]any{"mode": "certManager"}}), "issuerRef.name or tls.certManager.caSecretName"},
		"existing TLS, no name":     {with(map[string]any{"tls": map[string]any{"mode": "existingSecret"}}), "tls.existingSecret is required"},
		"network policy, no CIDRs":  {with(map[string]any{"networkPolicy": map[string]any{"enabled": true}}), "privatemodeCIDRs and gitlabCIDRs"},
		"admin Service, loopback":   {with(map[string]any{"admin": map[string]any{"service": map[string]any{"enabled": true}}}), "admin.service.enabled needs admin.listenOnPod"},
		"admin on pod, no networks": {with(map[string]any{"admin": map[string]any{"listenOnPod": true}}), "admin.allowedNetworks"},
		"air-gapped, no bundle":     {with(map[string]any{"airgapped": map[string]any{"enabled": true}}), "airgapped.collateralFrom.name is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestStrictDecodingRefusesUnknownFields: the decoder the matrix relies on
// refuses a misspelt field, in a built-in kind and in a custom resource.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	doc := "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 1\n      targetPrt: a\n"
	if _, _, err := strictDecoder.Decode([]byte(doc), nil, nil); err == nil || !strings.Contains(err.Error(), "targetPrt") {
		t.Errorf("Service with targetPrt: err %v", err)
	}
	cert := "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: x\nspec:\n  secretNme: y\n"
	if err := yaml.UnmarshalStrict([]byte(cert), &certificate{}); err == nil {
		t.Error("Certificate with secretNme decoded")
	}
}
