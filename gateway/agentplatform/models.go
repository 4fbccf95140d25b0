package agentplatform

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
)

// DefaultContextWindow is assumed for a model without a configured
// context_window: small enough for most self-hosted deployments.
const DefaultContextWindow = 32768

// ServedModels is a ModelResolver over the appliance's configured models:
// GitLab's model metadata must name one of them (by identifier, or by
// name when the identifier is empty); windows gives per-model context
// windows (missing: DefaultContextWindow).
func ServedModels(ids []string, windows map[string]int) ModelResolver {
	return func(_ context.Context, m ModelMetadata) (flow.Model, error) {
		want := m.Identifier
		if want == "" {
			want = m.Name
		}
		if !slices.Contains(ids, want) {
			return flow.Model{}, fmt.Errorf("GitLab selected model %q, which this appliance does not serve (it serves: %s); set the self-hosted model's identifier to one of them",
				bounded(want, 80), strings.Join(ids, ", "))
		}
		w := windows[want]
		if w <= 0 {
			w = DefaultContextWindow
		}
		return flow.Model{ID: want, ContextWindow: w}, nil
	}
}

func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
