package flowconfig

import (
	"fmt"

	"github.com/Masterminds/semver/v3"
)

// Registry is a PromptSource holding this service's own prompts by id and
// version; a reference picks the highest version its range allows.
type Registry struct {
	byID map[string][]registered
}

type registered struct {
	v *semver.Version
	p Prompt
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{byID: map[string][]registered{}} }

// Add registers prompt p (whose ID names it) at version; it fails on a
// malformed or duplicate version.
func (r *Registry) Add(version string, p Prompt) error {
	v, err := semver.StrictNewVersion(version)
	if err != nil {
		return fmt.Errorf("prompt %s: version %q: %w", p.ID, version, err)
	}
	for _, x := range r.byID[p.ID] {
		if x.v.Equal(v) {
			return fmt.Errorf("prompt %s: version %s registered twice", p.ID, version)
		}
	}
	p.Version, p.Inline = v.String(), false
	r.byID[p.ID] = append(r.byID[p.ID], registered{v: v, p: p})
	return nil
}

// Resolve implements PromptSource.
func (r *Registry) Resolve(id, constraint string) (Prompt, error) {
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return Prompt{}, fmt.Errorf("%q is not a semver range (e.g. ^1.0.0)", bound(constraint, 40))
	}
	list, ok := r.byID[id]
	if !ok {
		return Prompt{}, fmt.Errorf("prompt %q is not in this service's registry", bound(id, 64))
	}
	var best *registered
	for i := range list {
		if c.Check(list[i].v) && (best == nil || list[i].v.GreaterThan(best.v)) {
			best = &list[i]
		}
	}
	if best == nil {
		return Prompt{}, fmt.Errorf("prompt %q has no version matching %s", id, bound(constraint, 40))
	}
	return best.p, nil
}
