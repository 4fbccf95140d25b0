package flowengine

import (
	"context"
	"sort"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
)

// Defined is a flow.Flow running one fixed config (a foundational flow).
type Defined struct {
	Engine *Engine
	Config *flowconfig.Config
	// Feature names the flow in billing events (e.g. "review_merge_request").
	Feature string
}

// Run implements flow.Flow.
func (d *Defined) Run(ctx context.Context, s flow.Session) (flow.Outcome, error) {
	return d.Engine.Run(ctx, s, d.Config, d.Feature)
}

// Tools implements flow.Flow: the tools the config's components name.
func (d *Defined) Tools() []map[string]any {
	return toolsOf(d.Engine.o.Tools, d.Config)
}

func toolsOf(cat flowtools.Catalogue, cfg *flowconfig.Config) []map[string]any {
	seen := map[string]bool{}
	var names []string
	for _, c := range cfg.Components {
		for _, n := range append(append([]string{}, c.Toolset...), c.ToolName) {
			if _, ok := cat[n]; ok && !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(names))
	for _, n := range names {
		out = append(out, cat[n].Spec())
	}
	return out
}

// Inline is a flow.Flow running the flowConfig a startRequest carries
// (schema v1) — custom flows from GitLab's AI Catalog.
type Inline struct {
	Engine  *Engine
	Prompts flowconfig.PromptSource
}

// FeatureInline names inline flows in billing events.
const FeatureInline = "duo_agent_platform"

// Run implements flow.Flow. A config that fails validation ends the RPC
// with INVALID_ARGUMENT and the key-naming reason.
func (in *Inline) Run(ctx context.Context, s flow.Session) (flow.Outcome, error) {
	start := s.Start()
	if v := start.GetFlowConfigSchemaVersion(); v != "" && v != flowconfig.SchemaVersion {
		return "", &flow.ClientError{Message: "Unsupported flowConfigSchemaVersion " + quote(v) + ": this service runs schema v1"}
	}
	cfg, err := flowconfig.FromStruct(start.GetFlowConfig(), flowconfig.Options{Prompts: in.Prompts})
	if err != nil {
		return "", &flow.ClientError{Message: "Invalid flowConfig: " + err.Error()}
	}
	return in.Engine.Run(ctx, s, cfg, FeatureInline)
}

// Tools implements flow.Flow: the whole catalogue an inline flow may name.
func (in *Inline) Tools() []map[string]any { return in.Engine.o.Tools.Specs() }

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return `"` + s + `"`
}
