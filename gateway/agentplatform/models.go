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

// TaskToolCalling is the /v1/models task of models that call tools.
const TaskToolCalling = "tool_calling"

// RequireToolCalling wraps a resolver: a model the backend lists with
// tasks that lack tool_calling is refused (an agent cannot work without
// it). tasks returns the backend's tasks of a model; when the backend
// says nothing (no tasks, or tasks fails) the model is accepted.
func RequireToolCalling(next ModelResolver, tasks func(ctx context.Context, id string) []string) ModelResolver {
	return func(ctx context.Context, m ModelMetadata) (flow.Model, error) {
		fm, err := next(ctx, m)
		if err != nil {
			return fm, err
		}
		if t := tasks(ctx, fm.ID); len(t) > 0 && !slices.Contains(t, TaskToolCalling) {
			return flow.Model{}, fmt.Errorf("model %q cannot call tools (the backend lists its tasks as %s); assign a model with tool_calling to the Agent Platform features",
				fm.ID, strings.Join(t, ", "))
		}
		return fm, nil
	}
}
