package chat

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// Agent privileges (Rails' agentPrivilegesNames) that gate tools; the
// same values as flowtools', whose Tool, Allowed and PreApproved chat uses.
const (
	PrivReadOnlyGitLab  = flowtools.ReadOnlyGitLab
	PrivReadWriteGitLab = flowtools.ReadWriteGitLab
	PrivReadWriteFiles  = flowtools.ReadWriteFiles
	PrivRunCommands     = flowtools.RunCommands
	PrivRunMCPTools     = flowtools.RunMCPTools
)

// maxToolResultBytes bounds what one tool result adds to the history.
const maxToolResultBytes = flowtools.MaxResultBytes

// schema builds a JSON Schema object from (name, type, description)
// triples; required lists the mandatory names. Unlike flowtools.Schema it
// leaves array items untyped: chat's arrays hold objects as well as strings.
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
func catalogue() flowtools.Catalogue {
	return flowtools.Merge(gitlabReadTools(), gitlabWriteTools(), localTools())
}

// Tools lists the built-in catalogue as OpenAI function specs, sorted by
// name (ListTools).
func Tools() []map[string]any {
	return catalogue().Specs()
}

// toolset is the tools of one session after privilege filtering.
type toolset struct {
	byName      map[string]*flowtools.Tool
	order       []string
	preApproved func(t *flowtools.Tool) bool
}

// newToolset filters the catalogue by the workflow's privileges, adds the
// client's MCP tools when allowed, and keeps the local file and command
// tools for executors that have a workspace (not the browser).
func newToolset(w *gitlabapi.Workflow, start *contract.StartWorkflowRequest, clientType string) *toolset {
	privs := w.AgentPrivileges
	if len(privs) == 0 {
		privs = []string{PrivReadOnlyGitLab, PrivReadWriteGitLab}
	}
	ts := &toolset{byName: map[string]*flowtools.Tool{}}
	add := func(t *flowtools.Tool) {
		if _, dup := ts.byName[t.Name]; dup {
			return
		}
		ts.byName[t.Name] = t
		ts.order = append(ts.order, t.Name)
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
		allowed := flowtools.Allowed(t, privs)
		if t.Privilege == PrivReadWriteFiles || t.Privilege == PrivRunCommands {
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
	ts.preApproved = func(t *flowtools.Tool) bool {
		return flowtools.PreApproved(t, prePriv, pre)
	}
	return ts
}

func (ts *toolset) modelTools() []model.Tool {
	out := make([]model.Tool, 0, len(ts.order))
	for _, n := range ts.order {
		out = append(out, ts.byName[n].ModelTool())
	}
	return out
}

// errBadArgs marks arguments the model got wrong; the text goes back to it.
var errBadArgs = flowtools.ErrBadArgs

// str reads a string (or integral number, as GitLab ids often come)
// argument like flowtools.String, and also refuses values that would change
// an API path's meaning ("." and "..", control characters): chat's
// arguments end up in paths.
func str(args map[string]any, name string, required bool) (string, error) {
	if v, ok := args[name].(string); ok && (v == "." || v == ".." || strings.ContainsFunc(v, unicode.IsControl)) {
		return "", fmt.Errorf("%w: %s is not a valid value", errBadArgs, name)
	}
	return flowtools.String(args, name, required)
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
