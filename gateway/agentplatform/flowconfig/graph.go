package flowconfig

import "strings"

// flowKeys are the keys of the flow section; routers and the component
// graph they make are checked below.
var flowKeys = []string{"entry_point", "inputs"}

func (p *parser) flow(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return errAt("flow", "is required: a mapping with entry_point")
	}
	p.ignoreUnknown("flow", m, flowKeys)
	ep, err := reqString(m, "flow", "entry_point")
	if err != nil {
		return err
	}
	if p.cfg.Component(ep) == nil {
		return errAt("flow.entry_point", "%q is not a component", bound(ep, 64))
	}
	p.cfg.Flow.EntryPoint = ep
	l, err := list(m["inputs"], "flow.inputs", MaxListItems)
	if err != nil {
		return err
	}
	for i, x := range l {
		k := index("flow.inputs", i)
		im, ok := x.(map[string]any)
		if !ok {
			return errAt(k, "must be a mapping with category and input_schema")
		}
		cat, err := reqString(im, k, "category")
		if err != nil {
			return err
		}
		spec := FlowInputSpec{Category: cat}
		if s, ok := im["input_schema"]; ok && s != nil {
			sm, ok := s.(map[string]any)
			if !ok {
				return errAt(join(k, "input_schema"), "must be a mapping")
			}
			spec.InputSchema = sm
		}
		p.cfg.Flow.Inputs = append(p.cfg.Flow.Inputs, spec)
	}
	return nil
}

func (p *parser) routers(v any) error {
	l, err := list(v, "routers", MaxRouters)
	if err != nil {
		return err
	}
	target := func(key, to string) error {
		if to == End || p.cfg.Component(to) != nil {
			return nil
		}
		return errAt(key, "%q is neither a component nor %q", bound(to, 64), End)
	}
	for i, x := range l {
		k := index("routers", i)
		m, ok := x.(map[string]any)
		if !ok {
			return errAt(k, "must be a mapping with from and to (or condition)")
		}
		for f := range m {
			if f != "from" && f != "to" && f != "condition" {
				return errAt(join(k, bound(f, 64)), "is not a router key (from, to, condition)")
			}
		}
		from, err := reqString(m, k, "from")
		if err != nil {
			return err
		}
		if p.cfg.Component(from) == nil {
			return errAt(join(k, "from"), "%q is not a component", bound(from, 64))
		}
		for _, r := range p.cfg.Routers {
			if r.From == from {
				return errAt(join(k, "from"), "component %q already has a router", from)
			}
		}
		r := Router{From: from}
		cond, hasCond := m["condition"]
		to, err := optString(m, k, "to")
		if err != nil {
			return err
		}
		switch {
		case hasCond && to != "":
			return errAt(k, "has both to and condition; use one")
		case to != "":
			if err := target(join(k, "to"), to); err != nil {
				return err
			}
			r.To = to
		case hasCond:
			c, err := p.condition(join(k, "condition"), cond, target)
			if err != nil {
				return err
			}
			r.Condition = c
		default:
			return errAt(k, "needs to or condition")
		}
		p.cfg.Routers = append(p.cfg.Routers, r)
	}
	return nil
}

func (p *parser) condition(key string, v any, target func(key, to string) error) (*Condition, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errAt(key, "must be a mapping with input and routes")
	}
	for f := range m {
		if f != "input" && f != "routes" {
			return nil, errAt(join(key, bound(f, 64)), "is not a condition key (input, routes)")
		}
	}
	in, err := reqString(m, key, "input")
	if err != nil {
		return nil, err
	}
	in = strings.TrimPrefix(in, "context:")
	if err := p.checkContextPath(join(key, "input"), in); err != nil {
		return nil, err
	}
	routes, ok := m["routes"].(map[string]any)
	if !ok || len(routes) == 0 {
		return nil, errAt(join(key, "routes"), "is required: a mapping of values to components or %q", End)
	}
	if len(routes) > MaxListItems {
		return nil, errAt(join(key, "routes"), "has more than %d routes", MaxListItems)
	}
	c := &Condition{Input: in, Routes: map[string]string{}}
	for val, to := range routes {
		rk := join(join(key, "routes"), bound(val, 64))
		s, ok := to.(string)
		if !ok {
			return nil, errAt(rk, "must name a component or %q", End)
		}
		if err := target(rk, s); err != nil {
			return nil, err
		}
		c.Routes[val] = s
	}
	return c, nil
}

// checkGraph requires every component to have a way on (a router) and to
// be reachable from the entry point, so a flow cannot silently skip work.
func (p *parser) checkGraph() error {
	next := map[string][]string{}
	for _, r := range p.cfg.Routers {
		if r.Condition == nil {
			next[r.From] = append(next[r.From], r.To)
			continue
		}
		for _, to := range r.Condition.Routes {
			next[r.From] = append(next[r.From], to)
		}
	}
	for i, c := range p.cfg.Components {
		if _, ok := next[c.Name]; !ok {
			return errAt(index("components", i), "component %q has no router; add one from it (to another component or %q)", c.Name, End)
		}
	}
	seen := map[string]bool{}
	stack := []string{p.cfg.Flow.EntryPoint}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == End || seen[n] {
			continue
		}
		seen[n] = true
		stack = append(stack, next[n]...)
	}
	for i, c := range p.cfg.Components {
		if !seen[c.Name] {
			return errAt(index("components", i), "component %q is not reachable from flow.entry_point %q", c.Name, p.cfg.Flow.EntryPoint)
		}
	}
	if !reachesEnd(next, p.cfg.Flow.EntryPoint) {
		return errAt("routers", "no route reaches %q", End)
	}
	return nil
}

func reachesEnd(next map[string][]string, from string) bool {
	seen := map[string]bool{}
	stack := []string{from}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == End {
			return true
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		stack = append(stack, next[n]...)
	}
	return false
}
