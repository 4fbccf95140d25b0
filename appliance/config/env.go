package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// EnvOverrides maps each DUO_CONFIDENTIAL_* variable that overrides a key to
// that key's dotted path, e.g. DUO_CONFIDENTIAL_STATE_DIR → "state_dir". The
// names are derived from Config's yaml tags: segments upper-cased, joined
// with "_". It returns a new map on each call.
func EnvOverrides() map[string]string {
	out := make(map[string]string)
	for _, l := range schemaLeaves() {
		out[l.envName()] = l.dotted()
	}
	return out
}

// applyEnv applies the DUO_CONFIDENTIAL_* entries of env (KEY=VALUE strings)
// to c. An empty value counts as unset, so an empty line in a systemd
// EnvironmentFile cannot silently blank a key. An unknown DUO_CONFIDENTIAL_*
// name is an error: a misspelt override would otherwise be ignored and the
// admin would believe it in force.
func applyEnv(env []string, c *Config) []error {
	byName := make(map[string]leaf)
	var names []string
	for _, l := range schemaLeaves() {
		byName[l.envName()] = l
		names = append(names, l.envName())
	}
	// Later entries win, as with a shell's repeated assignment; sort the
	// result so errors come out in a stable order.
	values := make(map[string]string)
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == EnvConfigPath || name == EnvProxyToken {
			continue
		}
		values[name] = value
	}
	ordered := make([]string, 0, len(values))
	for name := range values {
		ordered = append(ordered, name)
	}
	sort.Strings(ordered)

	var errs []error
	root := reflect.ValueOf(c).Elem()
	for _, name := range ordered {
		value := values[name]
		src := "env " + name
		l, ok := byName[name]
		if !ok {
			errs = append(errs, &FieldError{Source: src, Msg: "unknown environment variable" +
				didYouMean(name, names) +
				"; unset it, or see `duo-confidential config example` for the keys (override KEY with DUO_CONFIDENTIAL_KEY, path segments joined by \"_\")"})
			continue
		}
		if value == "" {
			continue
		}
		if err := setText(root.FieldByIndex(l.index), value); err != nil {
			errs = append(errs, &FieldError{Source: src, Path: l.dotted(), Msg: err.Error()})
			continue
		}
		c.sources[l.dotted()] = src
		if l.typ.Kind() == reflect.Slice {
			n := root.FieldByIndex(l.index).Len()
			for i := range n {
				c.sources[fmt.Sprintf("%s[%d]", l.dotted(), i)] = src
			}
		}
	}
	return errs
}

// EnvOverridden lists the DUO_CONFIDENTIAL_* variables that changed a key,
// sorted, so nobody mistakes the file for the whole story.
func (c *Config) EnvOverridden() []string {
	var out []string
	for name, path := range EnvOverrides() {
		if strings.HasPrefix(c.Source(path), "env ") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
