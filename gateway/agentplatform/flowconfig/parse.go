package flowconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Limits on a config; inline configs come from clients.
const (
	MaxConfigBytes   = 256 << 10
	MaxComponents    = 64
	MaxRouters       = 128
	MaxListItems     = 128
	MaxPrompts       = 64
	MaxPromptBytes   = 64 << 10
	maxNameLen       = 64
	defaultOneOffTry = 3
	maxOneOffTry     = 10
)

// SchemaVersion is the only schema this package reads.
const SchemaVersion = "v1"

// Error is a validation failure naming the key that is wrong.
type Error struct {
	// Key is the path of the offending key ("components[2].tool_name");
	// empty for a document-level problem.
	Key    string
	Reason string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Key == "" {
		return "flow config: " + e.Reason
	}
	return "flow config: " + e.Key + ": " + e.Reason
}

func errAt(key, format string, args ...any) *Error {
	return &Error{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// PromptSource resolves a prompt reference (id and semver range such as
// "^1.0.0") to a prompt of this service's registry.
type PromptSource interface {
	Resolve(id, constraint string) (Prompt, error)
}

// Options configures parsing.
type Options struct {
	// Prompts resolves prompt references; nil allows inline prompts only.
	Prompts PromptSource
}

// Parse reads a v1 flow config from YAML (or JSON, which YAML reads too).
func Parse(data []byte, o Options) (*Config, error) {
	if len(data) > MaxConfigBytes {
		return nil, errAt("", "config is %d bytes; at most %d", len(data), MaxConfigBytes)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, errAt("", "not valid YAML: %s", firstLine(err.Error()))
	}
	return fromDoc(doc, o)
}

// FromStruct reads the inline flowConfig of a startRequest.
func FromStruct(s *structpb.Struct, o Options) (*Config, error) {
	if s == nil {
		return nil, errAt("", "flowConfig is empty")
	}
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		return nil, errAt("", "flowConfig cannot be encoded: %v", err)
	}
	return Parse(b, o)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return bound(s, 200)
}

func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var (
	nameRE     = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// topKeys are the top-level keys of the schema.
var topKeys = []string{"version", "environment", "components", "routers", "flow", "prompts", "name", "description", "product_group"}

var componentKeys = []string{"name", "type", "prompt_id", "prompt_version", "toolset", "tool_name", "inputs", "ui_log_events", "ui_role_as", "max_correction_attempts"}

// agentKeys are read for AgentComponents only; GitLab's other component
// types do not have them and ignore them, so they are listed as ignored.
var agentKeys = []string{"require_tool_approval", "pre_approved_tools", "max_cycles"}

// parser walks the generic document keeping the key path for errors.
type parser struct {
	o       Options
	cfg     *Config
	prompts map[string]Prompt // inline, by id
}

func fromDoc(doc any, o Options) (*Config, error) {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, errAt("", "the document must be a mapping with version, environment, components, routers and flow")
	}
	p := &parser{o: o, cfg: &Config{}, prompts: map[string]Prompt{}}
	p.ignoreUnknown("", m, topKeys)
	var err error
	if p.cfg.Version, err = reqString(m, "", "version"); err != nil {
		return nil, err
	}
	if p.cfg.Version != SchemaVersion {
		return nil, errAt("version", "%q is not supported; this service reads schema %q", bound(p.cfg.Version, 40), SchemaVersion)
	}
	if p.cfg.Environment, err = reqString(m, "", "environment"); err != nil {
		return nil, err
	}
	if !slices.Contains([]string{EnvAmbient, EnvChat, EnvChatPartial}, p.cfg.Environment) {
		return nil, errAt("environment", "%q is not one of ambient, chat, chat-partial", bound(p.cfg.Environment, 40))
	}
	if p.cfg.Name, err = optString(m, "", "name"); err != nil {
		return nil, err
	}
	if p.cfg.Description, err = optString(m, "", "description"); err != nil {
		return nil, err
	}
	if err := p.inlinePrompts(m["prompts"]); err != nil {
		return nil, err
	}
	if err := p.components(m["components"]); err != nil {
		return nil, err
	}
	if err := p.flow(m["flow"]); err != nil {
		return nil, err
	}
	if err := p.routers(m["routers"]); err != nil {
		return nil, err
	}
	if err := p.checkGraph(); err != nil {
		return nil, err
	}
	sort.Strings(p.cfg.Ignored)
	return p.cfg, nil
}

func (p *parser) ignoreUnknown(prefix string, m map[string]any, known []string) {
	for k := range m {
		if !slices.Contains(known, k) && len(p.cfg.Ignored) < MaxListItems {
			p.cfg.Ignored = append(p.cfg.Ignored, join(prefix, bound(k, 64)))
		}
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func index(prefix string, i int) string { return fmt.Sprintf("%s[%d]", prefix, i) }

func reqString(m map[string]any, prefix, key string) (string, error) {
	s, err := optString(m, prefix, key)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", errAt(join(prefix, key), "is required")
	}
	return s, nil
}

func optString(m map[string]any, prefix, key string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", errAt(join(prefix, key), "must be a string, not %s", kind(v))
	}
	return s, nil
}

func list(v any, key string, max int) ([]any, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, errAt(key, "must be a list, not %s", kind(v))
	}
	if len(l) > max {
		return nil, errAt(key, "has %d entries; at most %d", len(l), max)
	}
	return l, nil
}

func stringList(v any, key string) ([]string, error) {
	l, err := list(v, key, MaxListItems)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok || s == "" {
			return nil, errAt(index(key, i), "must be a non-empty string")
		}
		out = append(out, s)
	}
	return out, nil
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}

var errNoPromptSource = errors.New("no prompt registry")
