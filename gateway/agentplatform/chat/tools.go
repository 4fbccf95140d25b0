package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// Agent privileges (Rails' agentPrivilegesNames) that gate tools.
const (
	PrivReadOnlyGitLab  = "read_only_gitlab"
	PrivReadWriteGitLab = "read_write_gitlab"
	PrivReadWriteFiles  = "read_write_files"
	PrivRunCommands     = "run_commands"
	PrivRunMCPTools     = "run_mcp_tools"
)

// maxToolResultBytes bounds what one tool result adds to the history.
const maxToolResultBytes = 24 << 10

// tool is one function the agent offers the model.
type tool struct {
	name        string
	description string
	params      map[string]any // JSON Schema object
	privilege   string
	// write tools change something and need the user's approval unless
	// pre-approved.
	write bool
	run   func(ctx context.Context, env *toolEnv, args map[string]any) (string, error)
}

// toolEnv is what a running tool may use.
type toolEnv struct {
	gl        *gitlabapi.Client
	session   flow.Session
	projectID string
}

// spec is the tool as an OpenAI function spec (ListTools' shape).
func (t *tool) spec() map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{
		"name": t.name, "description": t.description, "parameters": t.params,
	}}
}

func (t *tool) modelTool() model.Tool {
	return model.Tool{Type: "function", Function: model.ToolFunction{Name: t.name, Description: t.description, Parameters: t.params}}
}

// schema builds a JSON Schema object from (name, type, description)
// triples; required lists the mandatory names.
func schema(required []string, props ...[3]string) map[string]any {
	p := map[string]any{}
	for _, x := range props {
		prop := map[string]any{"type": x[1], "description": x[2]}
		if x[1] == "array" {
			prop["items"] = map[string]any{}
		}
		p[x[0]] = prop
	}
	req := make([]any, 0, len(required))
	for _, r := range required {
		req = append(req, r)
	}
	return map[string]any{"type": "object", "properties": p, "required": req}
}

// catalogue is every built-in tool, by name.
func catalogue() map[string]*tool {
	m := map[string]*tool{}
	for _, list := range [][]*tool{gitlabReadTools(), gitlabWriteTools(), localTools()} {
		for _, t := range list {
			m[t.name] = t
		}
	}
	return m
}

// Tools lists the built-in catalogue as OpenAI function specs, sorted by
// name (ListTools).
func Tools() []map[string]any {
	c := catalogue()
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(names))
	for _, n := range names {
		out = append(out, c[n].spec())
	}
	return out
}

// toolset is the tools of one session after privilege filtering.
type toolset struct {
	byName      map[string]*tool
	order       []string
	preApproved func(t *tool) bool
}

// newToolset filters the catalogue by the workflow's privileges, adds the
// client's MCP tools when allowed, and keeps the local file and command
// tools for executors that have a workspace (not the browser).
func newToolset(w *gitlabapi.Workflow, start *contract.StartWorkflowRequest, clientType string) *toolset {
	privs := w.AgentPrivileges
	if len(privs) == 0 {
		privs = []string{PrivReadOnlyGitLab, PrivReadWriteGitLab}
	}
	ts := &toolset{byName: map[string]*tool{}}
	add := func(t *tool) {
		if _, dup := ts.byName[t.name]; dup {
			return
		}
		ts.byName[t.name] = t
		ts.order = append(ts.order, t.name)
	}
	cat := catalogue()
	names := make([]string, 0, len(cat))
	for n := range cat {
		names = append(names, n)
	}
	sort.Strings(names)
	hasWorkspace := clientType != "browser" && clientType != ""
	for _, n := range names {
		t := cat[n]
		allowed := slices.Contains(privs, t.privilege) ||
			(t.privilege == PrivReadOnlyGitLab && slices.Contains(privs, PrivReadWriteGitLab))
		if t.privilege == PrivReadWriteFiles || t.privilege == PrivRunCommands {
			allowed = allowed && hasWorkspace
		}
		if allowed {
			add(t)
		}
	}
	if slices.Contains(privs, PrivRunMCPTools) || w.MCPEnabled {
		for i, m := range start.GetMcpTools() {
			if i >= maxMCPTools {
				break
			}
			if t := mcpTool(m); t != nil {
				add(t)
			}
		}
	}
	pre := start.GetPreapprovedTools()
	prePriv := w.PreApprovedPrivileges
	ts.preApproved = func(t *tool) bool {
		return !t.write || slices.Contains(pre, t.name) || slices.Contains(prePriv, t.privilege)
	}
	return ts
}

func (ts *toolset) modelTools() []model.Tool {
	out := make([]model.Tool, 0, len(ts.order))
	for _, n := range ts.order {
		out = append(out, ts.byName[n].modelTool())
	}
	return out
}

// errBadArgs marks arguments the model got wrong; the text goes back to it.
var errBadArgs = errors.New("invalid arguments")

func parseArgs(s string) (map[string]any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: arguments must be a JSON object", errBadArgs)
	}
	return m, nil
}

// str reads a string (or number, as GitLab ids often come) argument.
// Values that would change an API path's meaning ("." and "..", control
// characters) are refused: arguments end up in paths.
func str(args map[string]any, name string, required bool) (string, error) {
	switch v := args[name].(type) {
	case string:
		if v == "." || v == ".." || strings.ContainsFunc(v, unicode.IsControl) {
			return "", fmt.Errorf("%w: %s is not a valid value", errBadArgs, name)
		}
		if v != "" || !required {
			return v, nil
		}
	case float64:
		return fmt.Sprintf("%d", int64(v)), nil
	case nil:
		if !required {
			return "", nil
		}
	}
	return "", fmt.Errorf("%w: %s is required and must be a string or number", errBadArgs, name)
}

// boundResult cuts a tool result to maxToolResultBytes, saying so.
func boundResult(s string) string {
	if len(s) <= maxToolResultBytes {
		return s
	}
	return s[:maxToolResultBytes] + "\n[result truncated: ask for a narrower page or path]"
}

// boundTail keeps the last maxToolResultBytes of s (job logs end with the
// failure), saying so.
func boundTail(s string) string {
	if len(s) <= maxToolResultBytes {
		return s
	}
	return "[log truncated: only its end is shown]\n" + s[len(s)-maxToolResultBytes:]
}
