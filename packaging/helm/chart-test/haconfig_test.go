package charttest

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// haConfigGolden is the configuration the chart renders for one replica,
// which cmd/duo-confidential's HAProxy test (TestHARollingRestartAndKill)
// runs three replicas with, substituting loopback addresses and temporary
// paths: the rolling-restart proof uses the chart's own configuration.
var haConfigGolden = filepath.Join("..", "..", "..", "cmd", "duo-confidential", "testdata", "chart-config.yaml")

// haValues: 3 replicas, existing Secrets for TLS and keys (the HA test
// makes them), the sandbox's models, an outbound CA bundle (the test's
// GitLab has a throwaway certificate); the Agent Platform on, as by
// default.
func haValues() map[string]any {
	return with(map[string]any{
		"replicaCount": 3,
		"tls":          map[string]any{"mode": "existingSecret", "existingSecret": "duo-tls"},
		"privatemode":  map[string]any{"apiKey": "", "existingSecret": "pm-key"},
		"gateway":      map[string]any{"signingKey": map[string]any{"existingSecret": "gw-keys"}, "models": map[string]any{"default": "sandbox-chat", "code_completions": "sandbox-code"}},
		"outbound":     map[string]any{"caBundle": map[string]any{"configMap": "corp-ca", "key": "ca.pem"}},
	})
}

func TestHAConfigGolden(t *testing.T) {
	manifest, err := render(t, haValues())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := renderedConfig(t, decodeAll(t, manifest))
	if *update {
		if err := os.WriteFile(haConfigGolden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(haConfigGolden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestHAConfigGolden -update)", err)
	}
	if string(want) != got {
		t.Errorf("the chart's configuration changed; the HA test runs %s: rerun with -update and check TestHARollingRestartAndKill\n--- golden\n%s\n--- rendered\n%s", haConfigGolden, want, got)
	}
}
