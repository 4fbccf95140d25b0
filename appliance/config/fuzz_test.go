package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary YAML and environment text to Parse. Parse must
// never panic, must either return a config that validates or an error, and
// every reported problem must be a non-empty message. The seed corpus lives
// in testdata/fuzz/FuzzParse; the example config is added here as well.
func FuzzParse(f *testing.F) {
	f.Add(ExampleConfig, "")
	f.Add([]byte("state_dir: /srv\nlog: {level: debug}\n"), "DUO_CONFIDENTIAL_OUTBOUND_TIMEOUT=5s")
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		c, err := Parse("fuzz.yaml", data, strings.Split(env, "\n"))
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned both a config and an error: %v", err)
			}
			problems := []error{err}
			var multi interface{ Unwrap() []error }
			if errors.As(err, &multi) {
				problems = multi.Unwrap()
			}
			for _, p := range problems {
				if strings.TrimSpace(p.Error()) == "" {
					t.Fatalf("empty problem message in %q", err)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
	})
}
