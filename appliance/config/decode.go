package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds the configuration file. A real one is a few KiB; a
// larger file is almost certainly the wrong file (a log, a bundle).
const maxConfigSize = 1 << 20

// decodeYAML decodes data into c strictly: every key must exist in Config,
// every value must have the key's type. Instead of yaml.v3's struct decoder
// (which reports "field X not found in type Y" without the key's path) it
// walks the parsed node tree itself, so each error names file, line and the
// full key path. Keys the file omits (or sets to null) keep their defaults.
func decodeYAML(name string, data []byte, c *Config) []error {
	if len(data) > maxConfigSize {
		return []error{&FieldError{Source: name, Msg: fmt.Sprintf(
			"file is %d bytes, more than the %d a configuration can be; is this the right file?",
			len(data), maxConfigSize)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file, or comments only: all defaults
		}
		return []error{syntaxError(name, err)}
	}
	var extra yaml.Node
	switch err := safeDecode(dec, &extra); {
	case err == nil:
		return []error{&FieldError{Source: fmt.Sprintf("%s:%d", name, extra.Line),
			Msg: `a second YAML document starts here; the configuration is one document (remove the "---" line and merge the two)`}}
	case !errors.Is(err, io.EOF):
		return []error{syntaxError(name, err)}
	}
	d := &decoder{name: name, sources: c.sources}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	d.section(root, reflect.ValueOf(c).Elem(), nil)
	return d.errs
}

// safeDecode runs the YAML parser and turns a panic inside it into an error:
// a configuration file is input, and no input may crash the appliance.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML parser failed on this file: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError rewrites a yaml.v3 parse error as "FILE:LINE: YAML syntax error: ...".
func syntaxError(name string, err error) error {
	msg := err.Error()
	src := name
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		src = name + ":" + m[1]
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return &FieldError{Source: src, Msg: "YAML syntax error: " + msg +
		" (indent with spaces, not tabs, and put a space after each \"key:\")"}
}

// decoder accumulates errors and value sources while walking the node tree.
type decoder struct {
	name    string
	sources map[string]string
	errs    []error
}

func (d *decoder) at(n *yaml.Node) string { return fmt.Sprintf("%s:%d", d.name, n.Line) }

func (d *decoder) fail(n *yaml.Node, path []string, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Source: d.at(n), Path: strings.Join(path, "."),
		Msg: fmt.Sprintf(format, args...)})
}

// maxAliasHops bounds alias chasing; yaml.v3 resolves an alias straight to
// its anchor, so one hop is normal and more means a malformed tree.
const maxAliasHops = 8

// resolve follows aliases to the node they name, or returns nil.
func resolve(n *yaml.Node) *yaml.Node {
	for range maxAliasHops {
		if n == nil || n.Kind != yaml.AliasNode {
			return n
		}
		n = n.Alias
	}
	return nil
}

// isNull reports whether n is an explicit YAML null ("key:" with no value,
// "~" or "null"), which this configuration treats like an omitted key.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (indented key: value lines)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	default:
		return "an unsupported YAML construct"
	}
}

// section decodes a mapping node into the struct v. Recursion follows the Go
// types, whose depth is fixed, so even self-referencing aliases terminate.
func (d *decoder) section(n *yaml.Node, v reflect.Value, path []string) {
	n = resolve(n)
	if n == nil {
		d.errs = append(d.errs, &FieldError{Source: d.name, Path: strings.Join(path, "."), Msg: "alias chain too long"})
		return
	}
	if isNull(n) || (n.Kind == yaml.DocumentNode && len(n.Content) == 0) {
		return
	}
	if n.Kind != yaml.MappingNode {
		if len(path) == 0 {
			d.fail(n, path, "the configuration must be a YAML mapping of keys (lines like \"state_dir: /var/lib/duo-confidential\"), got %s", describe(n))
			return
		}
		d.fail(n, path, "expected a section of keys indented under %q, got %s", path[len(path)-1], describe(n))
		return
	}
	t := v.Type()
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		key := k.Value
		if first, dup := seen[key]; dup {
			d.fail(k, path, "key %q appears twice (first on line %d); keep one", key, first)
			continue
		}
		seen[key] = k.Line
		f, ok := fieldByKey(t, key)
		if !ok {
			d.unknownKey(k, t, path)
			continue
		}
		p := append(append([]string(nil), path...), key)
		fv := v.FieldByIndex(f.Index)
		if isSection(f.Type) {
			d.section(val, fv, p)
			continue
		}
		d.leafValue(k, val, fv, p)
	}
}

// unknownKey reports a key that Config does not have, with a typo
// suggestion or the section where a key of that name does belong.
func (d *decoder) unknownKey(k *yaml.Node, t reflect.Type, path []string) {
	where := ""
	if len(path) > 0 {
		where = " in " + strings.Join(path, ".")
	}
	msg := fmt.Sprintf("unknown key %q%s", k.Value, where)
	if hint := didYouMean(k.Value, keysOf(t)); hint != "" {
		msg += hint
	} else if homes := sectionsHolding(k.Value); len(homes) > 0 {
		msg += fmt.Sprintf(" (a key of that name belongs under %s)", strings.Join(homes, " or "))
	} else {
		msg += fmt.Sprintf(" (known keys here: %s)", strings.Join(keysOf(t), ", "))
	}
	d.errs = append(d.errs, &FieldError{Source: d.at(k), Msg: msg})
}

// leafValue decodes a scalar or list node into the leaf field v.
func (d *decoder) leafValue(k, n *yaml.Node, v reflect.Value, path []string) {
	n = resolve(n)
	if n == nil {
		d.fail(k, path, "alias chain too long")
		return
	}
	if isNull(n) {
		return // "key:" with nothing after it keeps the default
	}
	dotted := strings.Join(path, ".")
	if v.Kind() == reflect.Slice {
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list such as [a, b] or lines starting with \"- \", got %s", describe(n))
			return
		}
		items := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			item = resolve(item)
			if item == nil || item.Kind != yaml.ScalarNode || isNull(item) {
				desc := "an empty entry"
				if item != nil && !isNull(item) {
					desc = describe(item)
				}
				d.fail(n.Content[i], path, "list entry %d must be a single value, got %s", i+1, desc)
				continue
			}
			d.sources[fmt.Sprintf("%s[%d]", dotted, i)] = d.at(item)
			items = append(items, item.Value)
		}
		v.Set(reflect.ValueOf(items))
		d.sources[dotted] = d.at(k)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected a single value, got %s", describe(n))
		return
	}
	if v.Type() == durationType && n.ShortTag() == "!!int" {
		d.fail(n, path, "%q has no unit: write a duration such as \"30s\", \"5m\" or \"720h\"", n.Value)
		return
	}
	if err := setText(v, n.Value); err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	d.sources[dotted] = d.at(k)
}

// setText parses text as the leaf type of v and stores it. Lists take
// comma-separated entries (the environment's list syntax).
func setText(v reflect.Value, text string) error {
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(strings.TrimSpace(text))
		if err != nil {
			return fmt.Errorf("%q is not a duration: write a number with a unit such as \"30s\", \"5m\" or \"720h\"", text)
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(text)
	case v.Kind() == reflect.Bool:
		switch strings.ToLower(strings.TrimSpace(text)) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			return fmt.Errorf("expected true or false, got %q", text)
		}
	case v.Kind() == reflect.Int:
		i, err := strconv.ParseInt(strings.TrimSpace(text), 10, 0)
		if err != nil {
			return fmt.Errorf("expected a whole number, got %q", text)
		}
		v.SetInt(i)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var items []string
		for item := range strings.SplitSeq(text, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		// Only reachable if Config gains a field of a new type; the schema
		// test catches that before it ships.
		return fmt.Errorf("internal error: configuration type %s is not supported", v.Type())
	}
	return nil
}
