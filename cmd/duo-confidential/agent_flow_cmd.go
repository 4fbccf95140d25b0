package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
)

// AgentFlowCmd runs one flow session (e.g. code_review/v1) against an
// Agent Platform, playing Workhorse for its GitLab API calls.
type AgentFlowCmd struct {
	agentClient `embed:""`
	Project     string        `help:"Project id, to show a code review's merge request notes afterwards." default:"1"`
	Timeout     time.Duration `help:"Give up after this long." default:"10m"`
	Definition  string        `arg:"" help:"Workflow definition, e.g. code_review/v1."`
	Goal        string        `arg:"" help:"The flow's goal (code_review/v1: the merge request's iid)."`
}

// Run plays the session, prints its UI log and, for a code review, the
// merge request's notes.
func (c *AgentFlowCmd) Run(g *Globals) error {
	conn, sess, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(g.Context(), c.Timeout)
	defer cancel()
	status, err := runFlow(ctx, contract.NewDuoWorkflowClient(conn), sess,
		c.WorkflowID, c.Definition, c.Goal, g.stdout())
	if err != nil {
		return fmt.Errorf("agent flow: %w", err)
	}
	if c.Definition == "code_review/v1" {
		printNotes(g.stdout(), sess.GitLab, sess.OAuthToken, c.Project, c.Goal)
	}
	if status != "FINISHED" {
		return fmt.Errorf("agent flow ended with status %s", status)
	}
	return nil
}

// runFlow runs one flow session, printing each UI log entry once.
func runFlow(ctx context.Context, client contract.DuoWorkflowClient, s workhorse.Session, workflowID, definition, goal string, out io.Writer) (string, error) {
	seen := map[string]bool{}
	fmt.Fprintf(out, "Flow %s, goal %q:\n", definition, goal)
	s.Start = &contract.StartWorkflowRequest{WorkflowID: workflowID, WorkflowDefinition: definition, Goal: goal, ClientVersion: "duo-confidential-agent-flow"}
	s.OnCheckpoint = func(cp *contract.NewCheckpoint) error {
		var v struct {
			ChannelValues struct {
				Log []struct {
					Type     string `json:"message_type"`
					Content  string `json:"content"`
					Status   string `json:"status"`
					ID       string `json:"message_id"`
					ToolInfo *struct {
						Name string `json:"name"`
					} `json:"tool_info"`
				} `json:"ui_chat_log"`
			} `json:"channel_values"`
		}
		if json.Unmarshal([]byte(cp.GetCheckpoint()), &v) != nil {
			return nil
		}
		for _, e := range v.ChannelValues.Log {
			if seen[e.ID] || e.Status == "pending" {
				continue
			}
			seen[e.ID] = true
			switch e.Type {
			case "tool":
				fmt.Fprintf(out, "  [tool] %s → %s\n", strings.TrimPrefix(strings.TrimPrefix(e.Content, "Used "), "Failed: "), e.Status)
			case "agent":
				fmt.Fprintf(out, "  [agent] %s\n", firstLines(e.Content, 6))
			case "workflow_end":
				fmt.Fprintf(out, "  [end] %s\n", e.Content)
			}
		}
		return nil
	}
	res, err := workhorse.Run(ctx, client, s)
	if err != nil {
		return "", err
	}
	if res.Last == nil {
		return "", fmt.Errorf("the session ended without a checkpoint")
	}
	fmt.Fprintf(out, "[%s]\n", res.Last.GetStatus())
	return res.Last.GetStatus(), nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n          ")
}

// printNotes shows the merge request's notes (where the review landed).
func printNotes(out io.Writer, gitlab http.Handler, token, project, iid string) {
	req := httptest.NewRequest(http.MethodGet, "/api/v4/projects/"+project+"/merge_requests/"+strings.TrimPrefix(iid, "!")+"/notes?per_page=50", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	gitlab.ServeHTTP(rec, req)
	var notes []struct {
		Body string `json:"body"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &notes) != nil {
		fmt.Fprintf(out, "(could not read the merge request's notes: HTTP %d)\n", rec.Code)
		return
	}
	fmt.Fprintf(out, "Merge request !%s has %d notes:\n", iid, len(notes))
	for _, n := range notes {
		fmt.Fprintf(out, "  - %s\n", firstLines(n.Body, 4))
	}
}
