package foundationalflows

import (
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
)

// TestDefinitionsParse: every foundational flow parses, resolves its
// prompts from our registry and names only tools of our catalogue that
// its privileges permit.
func TestDefinitionsParse(t *testing.T) {
	cat := Tools()
	for _, d := range Definitions {
		cfg, err := Config(d.Name)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Name+"/v1" != d.Name || cfg.Environment != flowconfig.EnvAmbient || len(cfg.Ignored) > 0 {
			t.Errorf("%s: name %s env %s ignored %v", d.Name, cfg.Name, cfg.Environment, cfg.Ignored)
		}
		for _, c := range cfg.Components {
			names := append(append([]string{}, c.Toolset...), c.ToolName)
			for _, n := range names {
				if n == "" {
					continue
				}
				tl, ok := cat[n]
				if !ok {
					t.Errorf("%s/%s: unknown tool %s", d.Name, c.Name, n)
					continue
				}
				if tl.Privilege != "" && !contains(d.Privileges, tl.Privilege) && !(tl.Privilege == "read_only_gitlab" && contains(d.Privileges, "read_write_gitlab")) {
					t.Errorf("%s/%s: tool %s needs %s", d.Name, c.Name, n, tl.Privilege)
				}
			}
			if c.Prompt != nil && (c.Prompt.Inline || c.Prompt.Version == "") {
				t.Errorf("%s/%s: prompt not from the registry", d.Name, c.Name)
			}
		}
	}
	if _, err := Config("sast_fp_detection/v1"); err == nil {
		t.Fatal("unimplemented flow resolved")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
