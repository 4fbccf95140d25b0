package flowtools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/model"
)

// Agent privileges (Rails' agentPrivilegesNames).
const (
	ReadWriteFiles  = "read_write_files"
	UseGit          = "use_git"
	RunCommands     = "run_commands"
	ReadWriteGitLab = "read_write_gitlab"
	ReadOnlyGitLab  = "read_only_gitlab"
	RunMCPTools     = "run_mcp_tools"
)

// Privileges lists every privilege this service knows.
var Privileges = []string{ReadWriteFiles, UseGit, RunCommands, ReadWriteGitLab, ReadOnlyGitLab, RunMCPTools}

// Env is what a running tool may use.
type Env struct {
	Session  flow.Session
	GitLab   *gitlabapi.Client
	Workflow *gitlabapi.Workflow
}

// ProjectID is the workflow's project ("" when it has none).
func (e *Env) ProjectID() string {
	if e.Workflow == nil {
		return ""
	}
	return e.Workflow.ProjectID
}

// Tool is one function a flow offers a model or runs itself.
type Tool struct {
	Name        string
	Description string
	// Params is a JSON Schema object.
	Params map[string]any
	// Privilege gates the tool (one of Privileges).
	Privilege string
	// Write tools change something; outside the pre-approved privileges
	// they need a human's approval.
	Write bool
	// Run executes the call. Errors are fed back to the model as text;
	// session errors (ctx, ErrStopped, ErrActionTooLarge) end the flow.
	Run func(ctx context.Context, env *Env, args map[string]any) (string, error)
}

// ModelTool is the tool as an OpenAI "tools" entry.
func (t *Tool) ModelTool() model.Tool {
	return model.Tool{Type: "function", Function: model.ToolFunction{Name: t.Name, Description: t.Description, Parameters: t.Params}}
}

// Spec is the tool as ListTools shows it.
func (t *Tool) Spec() map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{"name": t.Name, "description": t.Description, "parameters": t.Params}}
}

// Catalogue is a set of tools by name.
type Catalogue map[string]*Tool

// Merge returns a catalogue holding the tools of all lists (later lists
// win on a name clash).
func Merge(lists ...[]*Tool) Catalogue {
	c := Catalogue{}
	for _, l := range lists {
		for _, t := range l {
			c[t.Name] = t
		}
	}
	return c
}

// Specs lists the catalogue sorted by name (ListTools).
func (c Catalogue) Specs() []map[string]any {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(names))
	for _, n := range names {
		out = append(out, c[n].Spec())
	}
	return out
}

// Allowed reports whether privileges permit t; read-write GitLab implies
// read-only GitLab.
func Allowed(t *Tool, privileges []string) bool {
	return slices.Contains(privileges, t.Privilege) ||
		(t.Privilege == ReadOnlyGitLab && slices.Contains(privileges, ReadWriteGitLab))
}

// Select returns the named tools the privileges permit, in the given
// order, and the names dropped (unknown or not permitted) — GitLab drops
// them silently; callers log them.
func (c Catalogue) Select(names, privileges []string) (tools []*Tool, dropped []string) {
	for _, n := range names {
		t, ok := c[n]
		if !ok || !Allowed(t, privileges) {
			dropped = append(dropped, n)
			continue
		}
		tools = append(tools, t)
	}
	return tools, dropped
}

// PreApproved reports whether t may run without a human's approval: read
// tools always; write tools when their privilege is pre-approved for the
// workflow or the client listed the tool.
func PreApproved(t *Tool, preApprovedPrivileges, preApprovedTools []string) bool {
	return !t.Write || slices.Contains(preApprovedPrivileges, t.Privilege) || slices.Contains(preApprovedTools, t.Name)
}

// ErrBadArgs marks arguments the model got wrong; the text goes back to it.
var ErrBadArgs = errors.New("invalid arguments")

// ParseArgs reads a call's JSON arguments.
func ParseArgs(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: arguments must be a JSON object", ErrBadArgs)
	}
	return m, nil
}

// String reads a string (or integral number, as ids often come) argument.
func String(args map[string]any, name string, required bool) (string, error) {
	switch v := args[name].(type) {
	case string:
		if v != "" || !required {
			return v, nil
		}
	case float64:
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v)), nil
		}
	case int:
		return fmt.Sprint(v), nil
	case nil:
		if !required {
			return "", nil
		}
	}
	return "", fmt.Errorf("%w: %s is required and must be a string", ErrBadArgs, name)
}

// Strings reads a list of strings (a single string counts as one).
func Strings(args map[string]any, name string) ([]string, error) {
	switch v := args[name].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s must be a list of strings", ErrBadArgs, name)
			}
			out = append(out, s)
		}
		return out, nil
	case []string:
		return v, nil
	}
	return nil, fmt.Errorf("%w: %s must be a list of strings", ErrBadArgs, name)
}

// Schema builds a JSON Schema object from (name, type, description)
// triples; required lists the mandatory names.
func Schema(required []string, props ...[3]string) map[string]any {
	p := map[string]any{}
	for _, x := range props {
		prop := map[string]any{"type": x[1], "description": x[2]}
		if x[1] == "array" {
			prop["items"] = map[string]any{"type": "string"}
		}
		p[x[0]] = prop
	}
	req := make([]any, 0, len(required))
	for _, r := range required {
		req = append(req, r)
	}
	return map[string]any{"type": "object", "properties": p, "required": req}
}

// MaxResultBytes bounds what one tool result adds to a model's history.
const MaxResultBytes = 24 << 10

// Truncate cuts a result to max bytes (at a UTF-8 boundary) and says so,
// with how much was left out, so the model can ask for less.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[output truncated: %d of %d bytes shown; ask for a narrower range, path or pattern]", cut, len(s))
}

// IsSessionError reports whether err ends the session rather than being a
// tool failure for the model.
func IsSessionError(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, flow.ErrActionTooLarge) || errors.Is(err, flow.ErrStopped)
}
