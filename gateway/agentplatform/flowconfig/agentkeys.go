package flowconfig

import (
	"fmt"
	"math"
	"slices"
)

// DefaultMaxCycles is GitLab's max_cycles when a config leaves it out.
const DefaultMaxCycles = 280

// defaultWarningOffset is how many cycles before the limit the warning
// comes unless the config says otherwise (at most half the limit).
const defaultWarningOffset = 10

var maxCyclesKeys = []string{"threshold", "iteration_warning_offset"}

// agentApproval reads an AgentComponent's require_tool_approval,
// pre_approved_tools and max_cycles, validated as GitLab's AgentComponent
// validates them.
func (p *parser) agentApproval(key string, m map[string]any, c *Component) error {
	var err error
	if c.RequireToolApproval, err = optBool(m, key, "require_tool_approval"); err != nil {
		return err
	}
	pk := join(key, "pre_approved_tools")
	if c.PreApprovedTools, err = stringList(m["pre_approved_tools"], pk); err != nil {
		return err
	}
	for i, t := range c.PreApprovedTools {
		if !toolNameRE.MatchString(t) {
			return errAt(index(pk, i), "%q is not a tool name", bound(t, 64))
		}
		// GitLab accepts a name outside the toolset (it matches nothing
		// there, or an MCP tool GitLab adds to chat flows); it has no
		// effect here, so it is reported rather than fatal.
		if !slices.Contains(c.Toolset, t) && len(p.cfg.Ignored) < MaxListItems {
			p.cfg.Ignored = append(p.cfg.Ignored, index(pk, i))
		}
	}
	if c.PreApprovedTools != nil && len(c.PreApprovedTools) == 0 {
		c.PreApprovedTools = nil
	}
	v, ok := m["max_cycles"]
	if !ok || v == nil {
		return nil
	}
	c.MaxCycles, err = p.maxCycles(join(key, "max_cycles"), v)
	return err
}

// maxCycles reads max_cycles: an integer threshold, or a mapping with
// threshold and iteration_warning_offset (null turns the warning off).
func (p *parser) maxCycles(key string, v any) (*MaxCycles, error) {
	if n, ok := integer(v); ok {
		if n < 1 {
			return nil, errAt(key, "must be at least 1")
		}
		return &MaxCycles{Threshold: n, WarningOffset: derivedOffset(n)}, nil
	}
	mm, ok := v.(map[string]any)
	if !ok {
		return nil, errAt(key, "must be a whole number or a mapping with threshold and iteration_warning_offset, not %s", describe(v))
	}
	p.ignoreUnknown(key, mm, maxCyclesKeys)
	tk := join(key, "threshold")
	tv, ok := mm["threshold"]
	if !ok || tv == nil {
		return nil, errAt(tk, "is required")
	}
	n, ok := integer(tv)
	if !ok {
		return nil, errAt(tk, "must be a whole number, not %s", describe(tv))
	}
	if n < 1 {
		return nil, errAt(tk, "must be at least 1")
	}
	mc := &MaxCycles{Threshold: n}
	ov, set := mm["iteration_warning_offset"]
	switch {
	case !set:
		mc.WarningOffset = derivedOffset(n)
	case ov == nil:
		// Explicitly null: no warning.
	default:
		offKey := join(key, "iteration_warning_offset")
		o, isInt := integer(ov)
		switch {
		case !isInt:
			return nil, errAt(offKey, "must be a whole number or null, not %s", describe(ov))
		case o < 0:
			return nil, errAt(offKey, "must be at least 0")
		case o >= n:
			return nil, errAt(offKey, "%d must be less than threshold %d; set it to null to turn the warning off", o, n)
		}
		mc.WarningOffset = &o
	}
	return mc, nil
}

// derivedOffset is the warning offset for a threshold when the config
// sets none: ten cycles, or half the threshold when that is smaller, at
// least one; nil for a one-cycle limit, where no cycle is left to warn on.
func derivedOffset(threshold int) *int {
	o := min(defaultWarningOffset, max(threshold/2, 1))
	if o >= threshold {
		return nil
	}
	return &o
}

// integer reads a whole number (YAML gives int; JSON numbers that went
// through structpb come back as whole floats).
func integer(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<31 {
			return int(n), true
		}
	}
	return 0, false
}

// ignoreKnown lists the keys of known that m has (keys GitLab ignores for
// this component type).
func (p *parser) ignoreKnown(prefix string, m map[string]any, known []string) {
	for _, k := range known {
		if _, ok := m[k]; ok && len(p.cfg.Ignored) < MaxListItems {
			p.cfg.Ignored = append(p.cfg.Ignored, join(prefix, k))
		}
	}
}

// describe names a wrong value for an error: a number as itself, else its
// kind.
func describe(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprint(f)
	}
	return kind(v)
}
