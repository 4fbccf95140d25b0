package flowconfig

import (
	"slices"
	"strings"
)

// promptKeys are the keys of an inline prompt.
var promptKeys = []string{"prompt_id", "name", "model", "unit_primitives", "prompt_template", "params"}

func (p *parser) inlinePrompts(v any) error {
	l, err := list(v, "prompts", MaxPrompts)
	if err != nil {
		return err
	}
	for i, x := range l {
		key := index("prompts", i)
		m, ok := x.(map[string]any)
		if !ok {
			return errAt(key, "must be a mapping with prompt_id and prompt_template")
		}
		p.ignoreUnknown(key, m, promptKeys)
		id, err := reqString(m, key, "prompt_id")
		if err != nil {
			return err
		}
		if _, dup := p.prompts[id]; dup {
			return errAt(join(key, "prompt_id"), "%q is defined twice", bound(id, 64))
		}
		tk := join(key, "prompt_template")
		t, ok := m["prompt_template"].(map[string]any)
		if !ok {
			return errAt(tk, "is required: a mapping with system and/or user")
		}
		p.ignoreUnknown(tk, t, []string{"system", "user", "placeholder"})
		sys, err := optString(t, tk, "system")
		if err != nil {
			return err
		}
		user, err := optString(t, tk, "user")
		if err != nil {
			return err
		}
		if sys == "" && user == "" {
			return errAt(tk, "needs system or user text")
		}
		if len(sys)+len(user) > MaxPromptBytes {
			return errAt(tk, "is longer than %d bytes", MaxPromptBytes)
		}
		p.prompts[id] = Prompt{ID: id, Inline: true, System: sys, User: user}
	}
	return nil
}

func (p *parser) components(v any) error {
	if v == nil {
		return errAt("components", "is required: at least one component")
	}
	l, err := list(v, "components", MaxComponents)
	if err != nil {
		return err
	}
	if len(l) == 0 {
		return errAt("components", "is required: at least one component")
	}
	for i, x := range l {
		key := index("components", i)
		m, ok := x.(map[string]any)
		if !ok {
			return errAt(key, "must be a mapping with name and type")
		}
		c, err := p.component(key, m)
		if err != nil {
			return err
		}
		if p.cfg.Component(c.Name) != nil {
			return errAt(join(key, "name"), "%q is used by another component", c.Name)
		}
		p.cfg.Components = append(p.cfg.Components, c)
	}
	// Inputs may name any component, so they are checked once all are known.
	for i, c := range p.cfg.Components {
		for j, in := range c.Inputs {
			if in.Literal {
				continue
			}
			if err := p.checkContextPath(index(join(index("components", i), "inputs"), j), in.From); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *parser) component(key string, m map[string]any) (Component, error) {
	p.ignoreUnknown(key, m, append(slices.Clip(componentKeys), agentKeys...))
	var c Component
	var err error
	if c.Name, err = reqString(m, key, "name"); err != nil {
		return c, err
	}
	if !nameRE.MatchString(c.Name) || len(c.Name) > maxNameLen || c.Name == End {
		return c, errAt(join(key, "name"), "%q must be lower-case letters, digits and _ (starting with a letter, at most %d, not %q)", bound(c.Name, 64), maxNameLen, End)
	}
	if c.Type, err = reqString(m, key, "type"); err != nil {
		return c, err
	}
	if c.UIRoleAs, err = optString(m, key, "ui_role_as"); err != nil {
		return c, err
	}
	if c.ToolName, err = optString(m, key, "tool_name"); err != nil {
		return c, err
	}
	if c.Toolset, err = stringList(m["toolset"], join(key, "toolset")); err != nil {
		return c, err
	}
	for i, t := range c.Toolset {
		if !toolNameRE.MatchString(t) {
			return c, errAt(index(join(key, "toolset"), i), "%q is not a tool name", bound(t, 64))
		}
	}
	if c.UILogEvents, err = stringList(m["ui_log_events"], join(key, "ui_log_events")); err != nil {
		return c, err
	}
	if c.Inputs, err = inputs(m["inputs"], join(key, "inputs")); err != nil {
		return c, err
	}
	switch c.Type {
	case TypeAgent:
		if c.ToolName != "" {
			return c, errAt(join(key, "tool_name"), "is not used by an AgentComponent (it ends with final_response_tool); list tools in toolset")
		}
		if err = p.resolvePrompt(key, m, &c); err == nil {
			err = p.agentApproval(key, m, &c)
		}
	case TypeOneOff:
		if c.ToolName == "" {
			return c, errAt(join(key, "tool_name"), "is required for a OneOffComponent")
		}
		err = p.resolvePrompt(key, m, &c)
		c.MaxCorrectionAttempts = defaultOneOffTry
		if v, ok := m["max_correction_attempts"]; ok {
			n, isInt := v.(int)
			if !isInt || n < 0 || n > maxOneOffTry {
				return c, errAt(join(key, "max_correction_attempts"), "must be an integer from 0 to %d", maxOneOffTry)
			}
			c.MaxCorrectionAttempts = n
		}
	case TypeDeterministic:
		if c.ToolName == "" {
			return c, errAt(join(key, "tool_name"), "is required for a DeterministicStepComponent")
		}
		if _, ok := m["prompt_id"]; ok {
			return c, errAt(join(key, "prompt_id"), "is not used by a DeterministicStepComponent (it calls no model)")
		}
		if len(c.Toolset) > 0 {
			return c, errAt(join(key, "toolset"), "is not used by a DeterministicStepComponent; name the tool in tool_name")
		}
	case "HumanInputComponent":
		return c, errAt(join(key, "type"), "HumanInputComponent is experimental in GitLab and not supported here")
	default:
		return c, errAt(join(key, "type"), "%q is not one of AgentComponent, DeterministicStepComponent, OneOffComponent", bound(c.Type, 64))
	}
	if err != nil {
		return c, err
	}
	if c.Type != TypeAgent {
		p.ignoreKnown(key, m, agentKeys)
	}
	if c.ToolName != "" && !toolNameRE.MatchString(c.ToolName) {
		return c, errAt(join(key, "tool_name"), "%q is not a tool name", bound(c.ToolName, 64))
	}
	allowed := allowedEvents(c.Type)
	for i, e := range c.UILogEvents {
		if !slices.Contains(allowed, e) {
			return c, errAt(index(join(key, "ui_log_events"), i), "%q is not one of %s", bound(e, 64), strings.Join(allowed, ", "))
		}
	}
	return c, nil
}

func allowedEvents(typ string) []string {
	if typ == TypeAgent {
		return []string{EventToolCallInput, EventToolExecutionSuccess, EventToolExecutionFailed, EventAgentFinalAnswer}
	}
	return []string{EventToolCallInput, EventToolExecutionSuccess, EventToolExecutionFailed}
}

func (p *parser) resolvePrompt(key string, m map[string]any, c *Component) error {
	id, err := reqString(m, key, "prompt_id")
	if err != nil {
		return err
	}
	version, err := optString(m, key, "prompt_version")
	if err != nil {
		return err
	}
	if version == "" {
		pr, ok := p.prompts[id]
		if !ok {
			return errAt(join(key, "prompt_id"), "%q is not an inline prompt; give prompt_version to use the registry", bound(id, 64))
		}
		c.Prompt = &pr
		return nil
	}
	if _, inline := p.prompts[id]; inline {
		return errAt(join(key, "prompt_version"), "is set but %q is an inline prompt; leave prompt_version out", bound(id, 64))
	}
	if p.o.Prompts == nil {
		return errAt(join(key, "prompt_id"), "%q: %v", bound(id, 64), errNoPromptSource)
	}
	pr, err := p.o.Prompts.Resolve(id, version)
	if err != nil {
		return errAt(join(key, "prompt_version"), "%v", err)
	}
	c.Prompt = &pr
	return nil
}

var inputKeys = []string{"from", "as", "literal", "optional"}

func inputs(v any, key string) ([]Input, error) {
	l, err := list(v, key, MaxListItems)
	if err != nil {
		return nil, err
	}
	out := make([]Input, 0, len(l))
	seen := map[string]bool{}
	for i, x := range l {
		k := index(key, i)
		var in Input
		switch x := x.(type) {
		case string:
			path, ok := strings.CutPrefix(x, "context:")
			if !ok {
				return nil, errAt(k, "%q must start with context: (or be a mapping with literal: true)", bound(x, 64))
			}
			in = Input{From: path, As: lastSegment(path)}
		case map[string]any:
			for f := range x {
				if !slices.Contains(inputKeys, f) {
					return nil, errAt(join(k, bound(f, 64)), "is not an input key (from, as, literal, optional)")
				}
			}
			from, err := reqString(x, k, "from")
			if err != nil {
				return nil, err
			}
			as, err := optString(x, k, "as")
			if err != nil {
				return nil, err
			}
			lit, err := optBool(x, k, "literal")
			if err != nil {
				return nil, err
			}
			opt, err := optBool(x, k, "optional")
			if err != nil {
				return nil, err
			}
			in = Input{From: from, As: as, Literal: lit, Optional: opt}
			if !lit {
				path, ok := strings.CutPrefix(from, "context:")
				if !ok {
					return nil, errAt(join(k, "from"), "%q must start with context: unless literal is true", bound(from, 64))
				}
				in.From = path
				if in.As == "" {
					in.As = lastSegment(path)
				}
			} else if in.As == "" {
				return nil, errAt(join(k, "as"), "is required for a literal input")
			}
		default:
			return nil, errAt(k, "must be a context: string or a mapping, not %s", kind(x))
		}
		if !nameRE.MatchString(in.As) || len(in.As) > maxNameLen {
			return nil, errAt(k, "name %q must be lower-case letters, digits and _", bound(in.As, 64))
		}
		if seen[in.As] {
			return nil, errAt(k, "name %q is used by another input", in.As)
		}
		seen[in.As] = true
		out = append(out, in)
	}
	return out, nil
}

func optBool(m map[string]any, prefix, key string) (bool, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, errAt(join(prefix, key), "must be true or false")
	}
	return b, nil
}

func lastSegment(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// ContextRoots are the context values every flow may read.
var ContextRoots = []string{
	"goal", "project_id", "project_name", "project_http_url_to_repo", "project_default_branch", "project_web_url",
	"namespace_id", "workflow_id", "session_url", "current_date",
}

// checkContextPath accepts the documented context paths: the roots,
// inputs.<category>[.<field>…] and <component>.final_answer|tool_responses.
func (p *parser) checkContextPath(key, path string) error {
	if path == "" {
		return errAt(key, "context path is empty")
	}
	if slices.Contains(ContextRoots, path) {
		return nil
	}
	parts := strings.Split(path, ".")
	for _, s := range parts {
		if s == "" || !toolNameRE.MatchString(s) {
			return errAt(key, "context path %q is malformed", bound(path, 80))
		}
	}
	if parts[0] == "inputs" {
		if len(parts) < 2 {
			return errAt(key, "context path %q needs a category: inputs.<category>[.<field>]", bound(path, 80))
		}
		return nil
	}
	if p.cfg.Component(parts[0]) != nil {
		if len(parts) == 2 && (parts[1] == "final_answer" || parts[1] == "tool_responses") {
			return nil
		}
		return errAt(key, "context path %q: a component offers final_answer and tool_responses", bound(path, 80))
	}
	return errAt(key, "context path %q is unknown (roots: %s; inputs.<category>; <component>.final_answer|tool_responses)",
		bound(path, 80), strings.Join(ContextRoots, ", "))
}
