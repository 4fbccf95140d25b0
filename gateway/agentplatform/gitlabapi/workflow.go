package gitlabapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Workflow is what the service needs of Rails' Ai::DuoWorkflows::Workflow.
type Workflow struct {
	ID                    string
	StatusName            string
	ProjectID             string
	ProjectName           string
	ProjectWebURL         string
	ProjectHTTPURLToRepo  string
	NamespaceID           string
	AgentPrivileges       []string
	PreApprovedPrivileges []string
	MCPEnabled            bool
	// Checkpoint is the latest persisted checkpoint, nil for a new
	// workflow.
	Checkpoint *Checkpoint
}

// Two query shapes: GitLab 18.8 added latestCheckpoint (with thread ids)
// and archived/stalled; before, firstCheckpoint held the latest state.
const (
	workflowQuery18_2 = `query($workflowId: AiDuoWorkflowsWorkflowID!) { duoWorkflowWorkflows(workflowId: $workflowId) { nodes {
 statusName projectId project { id name webUrl httpUrlToRepo } agentPrivilegesNames preApprovedAgentPrivilegesNames mcpEnabled
 firstCheckpoint { checkpoint } } } }`
	workflowQuery18_8 = `query($workflowId: AiDuoWorkflowsWorkflowID!) { duoWorkflowWorkflows(workflowId: $workflowId) { nodes {
 statusName projectId project { id name webUrl httpUrlToRepo } namespaceId agentPrivilegesNames preApprovedAgentPrivilegesNames mcpEnabled
 latestCheckpoint { threadTs parentTs checkpoint } archived } } }`
)

// WorkflowQuery returns the GraphQL query for a GitLab version
// (x-gitlab-version; unknown or empty means the newest shape).
func WorkflowQuery(gitlabVersion string) string {
	if versionBefore(gitlabVersion, 18, 8) {
		return workflowQuery18_2
	}
	return workflowQuery18_8
}

// versionBefore reports whether v ("18.7.2-ee") is older than major.minor.
func versionBefore(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimLeft(parts[1], " "))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || (ma == major && mi < minor)
}

type gqlCheckpoint struct {
	ThreadTs   string          `json:"threadTs"`
	Checkpoint json.RawMessage `json:"checkpoint"`
}

type gqlWorkflow struct {
	StatusName string `json:"statusName"`
	ProjectID  any    `json:"projectId"`
	Project    *struct {
		ID            string `json:"id"`
		Name          string `json:"name"`
		WebURL        string `json:"webUrl"`
		HTTPURLToRepo string `json:"httpUrlToRepo"`
	} `json:"project"`
	NamespaceID      any            `json:"namespaceId"`
	Privileges       []string       `json:"agentPrivilegesNames"`
	PreApproved      []string       `json:"preApprovedAgentPrivilegesNames"`
	MCPEnabled       bool           `json:"mcpEnabled"`
	FirstCheckpoint  *gqlCheckpoint `json:"firstCheckpoint"`
	LatestCheckpoint *gqlCheckpoint `json:"latestCheckpoint"`
}

// Workflow fetches the workflow by Rails id through POST /api/graphql.
func (c *Client) Workflow(ctx context.Context, id, gitlabVersion string) (*Workflow, error) {
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return nil, fmt.Errorf("workflow id %q is not a number", bounded(id, 40))
	}
	var out struct {
		Data struct {
			Workflows struct {
				Nodes []gqlWorkflow `json:"nodes"`
			} `json:"duoWorkflowWorkflows"`
		} `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	body := map[string]any{
		"query":     WorkflowQuery(gitlabVersion),
		"variables": map[string]any{"workflowId": "gid://gitlab/Ai::DuoWorkflows::Workflow/" + id},
	}
	if err := c.JSON(ctx, "POST", "/api/graphql", body, &out); err != nil {
		return nil, fmt.Errorf("fetch workflow %s: %w", id, err)
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("fetch workflow %s: GraphQL: %s", id, bounded(out.Errors[0].Message, 200))
	}
	if len(out.Data.Workflows.Nodes) == 0 {
		return nil, fmt.Errorf("workflow %s not found or not visible to the user", id)
	}
	n := out.Data.Workflows.Nodes[0]
	w := &Workflow{
		ID: id, StatusName: n.StatusName, ProjectID: idString(n.ProjectID), NamespaceID: idString(n.NamespaceID),
		AgentPrivileges: n.Privileges, PreApprovedPrivileges: n.PreApproved, MCPEnabled: n.MCPEnabled,
	}
	if n.Project != nil {
		w.ProjectName, w.ProjectWebURL, w.ProjectHTTPURLToRepo = n.Project.Name, n.Project.WebURL, n.Project.HTTPURLToRepo
		if w.ProjectID == "" {
			w.ProjectID = idString(n.Project.ID)
		}
	}
	cp := n.LatestCheckpoint
	if cp == nil {
		cp = n.FirstCheckpoint
	}
	if cp != nil && len(cp.Checkpoint) > 0 && string(cp.Checkpoint) != "null" {
		decoded, err := DecodeCheckpoint(cp.Checkpoint)
		if err != nil {
			return nil, fmt.Errorf("workflow %s: latest checkpoint: %w", id, err)
		}
		if decoded.ID == "" {
			decoded.ID = cp.ThreadTs
		}
		w.Checkpoint = decoded
	}
	return w, nil
}

// idString turns GitLab's ids (numbers, "123", "gid://gitlab/Project/123")
// into the numeric string the REST API takes.
func idString(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64:
		s = strconv.FormatInt(int64(x), 10)
	default:
		return ""
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// Status events the service sends (Rails' workflow state machine).
const (
	EventStart                   = "start"
	EventResume                  = "resume"
	EventRetry                   = "retry"
	EventFinish                  = "finish"
	EventDrop                    = "drop"
	EventStop                    = "stop"
	EventRequireInput            = "require_input"
	EventRequireToolCallApproval = "require_tool_call_approval"
	EventPause                   = "pause"
)

// ErrUnsupportedStatusEvent: Rails refused the transition (400).
var ErrUnsupportedStatusEvent = errors.New("UnsupportedStatusEvent: GitLab refused the workflow status change")

// StatusEvent moves the workflow's state in Rails.
func (c *Client) StatusEvent(ctx context.Context, id, event string) error {
	err := c.JSON(ctx, "PATCH", "/api/v4/ai/duo_workflows/workflows/"+id, map[string]string{"status_event": event}, nil)
	var se *StatusError
	if errors.As(err, &se) && se.Status == 400 {
		return fmt.Errorf("%w (%s: %s)", ErrUnsupportedStatusEvent, event, se.Message)
	}
	return err
}
