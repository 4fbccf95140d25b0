package flowconfig

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParse: any input either parses to a config that satisfies the
// validator's promises or fails with a key-naming *Error; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: v1\nenvironment: ambient\n"))
	r := testRegistry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, Options{Prompts: r})
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if cfg.Component(cfg.Flow.EntryPoint) == nil {
			t.Fatal("entry point is not a component")
		}
		for _, c := range cfg.Components {
			if (c.Type == TypeAgent || c.Type == TypeOneOff) && c.Prompt == nil {
				t.Fatalf("component %s without prompt", c.Name)
			}
			if (c.Type == TypeDeterministic || c.Type == TypeOneOff) && c.ToolName == "" {
				t.Fatalf("component %s without tool", c.Name)
			}
			if c.Type != TypeAgent && (c.RequireToolApproval || c.PreApprovedTools != nil || c.MaxCycles != nil) {
				t.Fatalf("%s %s has agent-only settings", c.Type, c.Name)
			}
			if m := c.MaxCycles; m != nil && (m.Threshold < 1 || m.WarningOffset != nil && (*m.WarningOffset < 0 || *m.WarningOffset >= m.Threshold)) {
				t.Fatalf("component %s: max_cycles %+v", c.Name, m)
			}
		}
		for _, rt := range cfg.Routers {
			if rt.To != "" && rt.To != End && cfg.Component(rt.To) == nil {
				t.Fatalf("router to unknown %q", rt.To)
			}
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
	})
}
