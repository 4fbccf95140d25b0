package flowengine

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
)

// Bounds on the MCP tools a client offers one session.
const (
	maxMCPTools      = 64
	maxMCPSchemaSize = 64 << 10
)

// mcpTools are the client's MCP tools (startRequest.mcpTools) that a
// component's toolset names, when the workflow may run MCP tools; each
// runs as a runMCPTool action. Untrusted ones count as write tools.
func (r *run) mcpTools(toolset []string) []*flowtools.Tool {
	if !slices.Contains(r.privileges(), flowtools.RunMCPTools) {
		return nil
	}
	var out []*flowtools.Tool
	for i, m := range r.s.Start().GetMcpTools() {
		if i >= maxMCPTools {
			break
		}
		name := m.GetName()
		if name == "" || len(name) > 128 || !slices.Contains(toolset, name) {
			continue
		}
		if _, builtin := r.e.o.Tools[name]; builtin {
			continue
		}
		params := map[string]any{"type": "object", "properties": map[string]any{}}
		if s := m.GetInputSchema(); s != "" && len(s) <= maxMCPSchemaSize {
			var p map[string]any
			if json.Unmarshal([]byte(s), &p) == nil && p != nil {
				params = p
			}
		}
		out = append(out, &flowtools.Tool{
			Name: name, Description: flowtools.Truncate(m.GetDescription(), 2048), Params: params,
			Privilege: flowtools.RunMCPTools, Write: !m.GetTrusted(),
			Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
				b, err := json.Marshal(args)
				if err != nil {
					return "", err
				}
				resp, err := env.Session.Do(ctx, &contract.Action{Action: &contract.Action_RunMCPTool{RunMCPTool: &contract.RunMCPTool{Name: name, Args: string(b)}}})
				if err != nil {
					return "", err
				}
				return executortools.Answer(resp)
			},
		})
	}
	return out
}
