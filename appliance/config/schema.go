package config

import (
	"reflect"
	"sort"
	"strings"
	"time"
)

// The configuration's shape is read from the Config struct's yaml tags, so
// the YAML decoder, the environment overrides and the tests that check the
// example file all agree with the struct without a hand-kept key list.

var durationType = reflect.TypeFor[time.Duration]()

// leaf is one settable key of the configuration.
type leaf struct {
	path  []string // yaml names from the root, e.g. [attestation manifest mode]
	index []int    // reflect field index path from Config
	typ   reflect.Type
}

// dotted returns the key path as written in messages: "attestation.manifest.mode".
func (l leaf) dotted() string { return strings.Join(l.path, ".") }

// envName returns the environment variable that overrides this key.
func (l leaf) envName() string {
	return EnvPrefix + strings.ToUpper(strings.Join(l.path, "_"))
}

// yamlName returns the key name of a struct field, or "" if the field is not
// part of the configuration (unexported, untagged or tagged "-").
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// fieldByKey finds the field of struct type t whose yaml name is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if yamlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the yaml names of struct type t in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// isSection reports whether t is a nested section (a struct that is not a
// leaf value type).
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct
}

// schemaLeaves lists every settable key of Config in declaration order.
func schemaLeaves() []leaf {
	var out []leaf
	var walk func(t reflect.Type, path []string, index []int)
	walk = func(t reflect.Type, path []string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			p := append(append([]string(nil), path...), name)
			ix := append(append([]int(nil), index...), i)
			if isSection(f.Type) {
				walk(f.Type, p, ix)
				continue
			}
			out = append(out, leaf{path: p, index: ix, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), nil, nil)
	return out
}

// suggest returns the candidate closest to got, or "" when none is close
// enough to be a plausible typo.
func suggest(got string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(got), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	// Allow roughly one typo per three characters, and at least one.
	limit := max(1, len(got)/3)
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

// didYouMean formats suggest's answer as a message suffix.
func didYouMean(got string, candidates []string) string {
	if s := suggest(got, candidates); s != "" {
		return " (did you mean " + quote(s) + "?)"
	}
	return ""
}

// quote double-quotes s for messages.
func quote(s string) string { return `"` + s + `"` }

// editDistance is the optimal-string-alignment distance between a and b
// (Levenshtein plus adjacent transpositions, the commonest typo), counted in
// bytes since keys are ASCII.
func editDistance(a, b string) int {
	prevPrev := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prevPrev[j-2]+1)
			}
		}
		prevPrev, prev, cur = prev, cur, prevPrev
	}
	return prev[len(b)]
}

// sectionsHolding lists the dotted paths of the sections that have a key
// named key, so a key placed under the wrong section can be pointed home.
func sectionsHolding(key string) []string {
	seen := map[string]bool{}
	for _, l := range schemaLeaves() {
		for i, seg := range l.path {
			if seg != key {
				continue
			}
			parent := strings.Join(l.path[:i], ".")
			if parent == "" {
				parent = "the top level"
			}
			seen[parent] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
