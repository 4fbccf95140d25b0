package charttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// applianceBinary builds cmd/duo-confidential from this checkout once.
func applianceBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "duo-chart-test-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "duo-confidential")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/duo-confidential")
		cmd.Dir = filepath.Join("..", "..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			t.Logf("%s", out)
		}
	})
	if binErr != nil {
		t.Fatalf("build the appliance: %v", binErr)
	}
	return binPath
}

// podFiles writes what the pod would see at its mount paths under root:
// the rendered ConfigMaps and Secrets, the external ones from fixtures,
// empty directories for the state volume and /tmp. Files get the volume's
// defaultMode, as the kubelet writes them.
func podFiles(t *testing.T, root string, objs []object, sts *appsv1.StatefulSet, fixtures map[string]map[string][]byte) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range sts.Spec.Template.Spec.Containers[0].VolumeMounts {
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		v, ok := vols[m.Name]
		var data map[string][]byte
		var items []corev1.KeyToPath
		mode := int32(0o644)
		switch {
		case !ok: // a volume claim template
			continue
		case v.Secret != nil:
			data = objectData(t, objs, "Secret", v.Secret.SecretName, fixtures)
			items = v.Secret.Items
			if v.Secret.DefaultMode != nil {
				mode = *v.Secret.DefaultMode
			}
		case v.ConfigMap != nil:
			data = objectData(t, objs, "ConfigMap", v.ConfigMap.Name, fixtures)
			items = v.ConfigMap.Items
		default:
			continue
		}
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: key %s missing", m.Name, it.Key)
			}
			if err := os.WriteFile(filepath.Join(dir, it.Path), b, os.FileMode(mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// objectData is the data of a rendered ConfigMap or Secret, else the
// fixture standing in for one made outside the chart.
func objectData(t *testing.T, objs []object, kind, name string, fixtures map[string]map[string][]byte) map[string][]byte {
	t.Helper()
	for _, o := range objs {
		if o.Kind != kind || o.Name != name {
			continue
		}
		switch obj := o.Obj.(type) {
		case *corev1.Secret:
			return obj.Data
		case *corev1.ConfigMap:
			out := map[string][]byte{}
			for k, v := range obj.Data {
				out[k] = []byte(v)
			}
			return out
		}
	}
	if f, ok := fixtures[kind+"/"+name]; ok {
		return f
	}
	t.Fatalf("%s %s: neither rendered nor a fixture", kind, name)
	return nil
}

// fixtures stand in for the Secrets an admin or cert-manager makes.
func fixtures(t *testing.T, names []string, sandboxDir string) map[string]map[string][]byte {
	t.Helper()
	certPEM, keyPEM := selfSigned(t, names)
	tlsSecret := map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse battery staple"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(sandboxDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return map[string]map[string][]byte{
		"Secret/duo-duo-confidential-tls": tlsSecret, // cert-manager's
		"Secret/duo-tls":                  tlsSecret,
		"Secret/pm-key":                   {"api-key": []byte("test-api-key\n")},
		"Secret/gw-keys":                  {"signing-key.pem": rsaPEM(t), "validation-key.pem": rsaPEM(t)},
		"Secret/admin-hash":               {"admin-password": hash},
		// `duo-confidential sandbox --out` writes a real bundle and manifest.
		"Secret/collateral": {"collateral.json": read("collateral.json"), "manifest.json": read("manifest.json")},
	}
}

func rsaPEM(t *testing.T) []byte {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func selfSigned(t *testing.T, names []string) (certPEM, keyPEM []byte) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// agentPlatformKnown reports whether the binary's configuration has the
// agent_platform section yet (another change adds it).
func agentPlatformKnown(t *testing.T, bin string) bool {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("state_dir: "+t.TempDir()+"\nagent_platform:\n  listen: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "config", "check", p).CombinedOutput()
	return err == nil || !strings.Contains(string(out), "agent_platform")
}

// TestRenderedConfigPassesConfigCheck runs the real binary's `config check`
// — what the chart's init container runs — on the configuration every
// matrix case renders, with the files the pod would have mounted.
func TestRenderedConfigPassesConfigCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building the appliance")
	}
	bin := applianceBinary(t)
	sandbox := t.TempDir()
	sandboxFiles(t, bin, sandbox)
	apKnown := agentPlatformKnown(t, bin)
	if !apKnown {
		t.Log("this binary has no agent_platform configuration yet: cases are checked with agentPlatform.enabled=false")
	}
	for _, c := range matrix() {
		t.Run(c.name, func(t *testing.T) {
			values := c.values
			if !apKnown {
				values = with(map[string]any{"agentPlatform": map[string]any{"enabled": false}})
				values = mergeOver(values, c.values)
			}
			manifest, err := render(t, values)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeAll(t, manifest)
			text, _ := renderedConfig(t, objs)
			sts := find(t, objs, "StatefulSet", "duo-duo-confidential").Obj.(*appsv1.StatefulSet)
			root := t.TempDir()
			podFiles(t, root, objs, sts, fixtures(t, []string{"duo-duo-confidential.duo-system.svc", "localhost"}, sandbox))
			// The pod's absolute paths, under root.
			text = strings.ReplaceAll(text, "/etc/duo-confidential/", root+"/etc/duo-confidential/")
			text = strings.ReplaceAll(text, "/var/lib/duo-confidential", root+"/var/lib/duo-confidential")
			cfgPath := filepath.Join(root, "config.yaml")
			if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "config", "check", "--config", cfgPath).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "config OK") {
				t.Errorf("config check: %v\n%s\nconfig:\n%s", err, out, text)
			}
		})
	}
}

// sandboxFiles runs `sandbox --out DIR` until it has written its manifest
// and collateral bundle (real files of the formats air-gapped sites import).
func sandboxFiles(t *testing.T, bin, dir string) {
	t.Helper()
	cmd := exec.Command(bin, "sandbox", "--listen", "127.0.0.1:0", "--out", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; i < 200; i++ {
		_, e1 := os.Stat(filepath.Join(dir, "collateral.json"))
		_, e2 := os.Stat(filepath.Join(dir, "manifest.json"))
		_, e3 := os.Stat(filepath.Join(dir, "endpoint"))
		if e1 == nil && e2 == nil && e3 == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("sandbox --out wrote no manifest and collateral within 10 s")
}

// mergeOver merges over into base, over's leaves winning, except that
// base's agentPlatform setting stays.
func mergeOver(base, over map[string]any) map[string]any {
	ap := base["agentPlatform"]
	out := map[string]any{}
	for k, v := range over {
		out[k] = v
	}
	out["agentPlatform"] = ap
	return out
}
