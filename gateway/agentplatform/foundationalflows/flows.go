package foundationalflows

import (
	"embed"
	"fmt"
	"log/slog"
	"sort"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/codereview"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowconfig"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowengine"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabtools"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

//go:embed definitions/*.yml
var definitions embed.FS

// Definition is one foundational flow: GitLab's workflowDefinition name,
// our definition file, and the feature it is billed and configured as.
type Definition struct {
	// Name is the workflowDefinition GitLab sends ("code_review/v1").
	Name string
	file string
	// Feature is GitLab's feature setting whose model the flow uses.
	Feature string
	// Privileges are what the flow needs in agentPrivilegesNames.
	Privileges []string
}

// Definitions are the foundational flows this service runs.
var Definitions = []Definition{
	{Name: "code_review/v1", file: "code_review.yml", Feature: "review_merge_request",
		Privileges: []string{flowtools.ReadOnlyGitLab, flowtools.ReadWriteGitLab, flowtools.ReadWriteFiles}},
	{Name: "developer/v1", file: "developer.yml", Feature: "duo_agent_platform",
		Privileges: []string{flowtools.ReadWriteFiles, flowtools.ReadOnlyGitLab, flowtools.ReadWriteGitLab, flowtools.RunCommands, flowtools.UseGit}},
	{Name: "fix_pipeline/v1", file: "fix_pipeline.yml", Feature: "duo_agent_platform",
		Privileges: []string{flowtools.ReadWriteFiles, flowtools.ReadOnlyGitLab, flowtools.ReadWriteGitLab, flowtools.RunCommands, flowtools.UseGit}},
	{Name: "convert_to_gl_ci/v1", file: "convert_to_gl_ci.yml", Feature: "duo_agent_platform",
		Privileges: []string{flowtools.ReadWriteFiles, flowtools.ReadOnlyGitLab, flowtools.ReadWriteGitLab, flowtools.UseGit}},
}

// Tools is every tool the foundational and inline flows may name.
func Tools() flowtools.Catalogue {
	return flowtools.Merge(executortools.Tools(), gitlabtools.Tools(), codereview.Tools())
}

// Options configures the flows.
type Options struct {
	Model  flowengine.Model
	Budget flowengine.Budget
	Logger *slog.Logger
	// ModelCalls, if set, is told about every model call (metrics).
	ModelCalls func(usage model.Usage, err error)
	// ForceToolChoice forces tool calls (flowengine.Options.ForceToolChoice;
	// config agent_platform.force_tool_choice).
	ForceToolChoice bool
}

// Flows are the runnable flows: by workflowDefinition, and the runner for
// inline flowConfig.
type Flows struct {
	ByDefinition map[string]flow.Flow
	Inline       flow.Flow
}

// New parses every definition against the prompt registry (a broken
// definition is a build defect and fails here) and returns the flows.
func New(o Options) (*Flows, error) {
	reg, err := Registry()
	if err != nil {
		return nil, err
	}
	eng, err := flowengine.New(flowengine.Options{Model: o.Model, Tools: Tools(), Budget: o.Budget, Logger: o.Logger, ModelCalls: o.ModelCalls,
		ForceToolChoice: o.ForceToolChoice})
	if err != nil {
		return nil, err
	}
	out := &Flows{ByDefinition: map[string]flow.Flow{}, Inline: &flowengine.Inline{Engine: eng, Prompts: reg}}
	for _, d := range Definitions {
		cfg, err := Config(d.Name)
		if err != nil {
			return nil, err
		}
		out.ByDefinition[d.Name] = &flowengine.Defined{Engine: eng, Config: cfg, Feature: d.Feature}
	}
	return out, nil
}

// Config parses the definition of a foundational flow.
func Config(name string) (*flowconfig.Config, error) {
	reg, err := Registry()
	if err != nil {
		return nil, err
	}
	for _, d := range Definitions {
		if d.Name != name {
			continue
		}
		b, err := definitions.ReadFile("definitions/" + d.file)
		if err != nil {
			return nil, err
		}
		cfg, err := flowconfig.Parse(b, flowconfig.Options{Prompts: reg})
		if err != nil {
			return nil, fmt.Errorf("foundational flow %s: %w", d.Name, err)
		}
		return cfg, nil
	}
	return nil, fmt.Errorf("no foundational flow %q", name)
}

// Names lists the foundational flows' workflowDefinition names.
func Names() []string {
	n := make([]string, 0, len(Definitions))
	for _, d := range Definitions {
		n = append(n, d.Name)
	}
	sort.Strings(n)
	return n
}
