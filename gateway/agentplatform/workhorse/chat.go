package workhorse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
)

// printer renders checkpoints as they stream: new agent text as it grows,
// each tool call once it finished, approval requests.
type printer struct {
	out     io.Writer
	printed map[string]int // message_id → bytes of content printed (agent) or 1 (others)
}

type logEntry struct {
	MessageType string `json:"message_type"`
	Content     string `json:"content"`
	Status      string `json:"status"`
	MessageID   string `json:"message_id"`
	ToolInfo    *struct {
		Name string         `json:"name"`
		Args map[string]any `json:"args"`
	} `json:"tool_info"`
}

func (p *printer) checkpoint(c *contract.NewCheckpoint) error {
	var cp struct {
		ChannelValues struct {
			UIChatLog []logEntry `json:"ui_chat_log"`
		} `json:"channel_values"`
	}
	if err := json.Unmarshal([]byte(c.GetCheckpoint()), &cp); err != nil {
		return fmt.Errorf("checkpoint is not JSON: %w", err)
	}
	for _, e := range cp.ChannelValues.UIChatLog {
		done := p.printed[e.MessageID]
		switch e.MessageType {
		case "agent":
			if len(e.Content) > done {
				if done == 0 {
					fmt.Fprint(p.out, "\nDuo: ")
				}
				fmt.Fprint(p.out, e.Content[done:])
				p.printed[e.MessageID] = len(e.Content)
			}
		case "tool":
			if done == 0 && e.Status != "pending" && e.ToolInfo != nil {
				fmt.Fprintf(p.out, "\n  [tool] %s %s → %s", e.ToolInfo.Name, args(e.ToolInfo.Args), e.Status)
				p.printed[e.MessageID] = 1
			}
		case "request":
			if done == 0 && e.ToolInfo != nil {
				fmt.Fprintf(p.out, "\n  [approval needed] %s %s", e.ToolInfo.Name, args(e.ToolInfo.Args))
				p.printed[e.MessageID] = 1
			}
		}
	}
	return nil
}

func args(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		v, _ := json.Marshal(m[k])
		s := string(v)
		if len(s) > 60 {
			s = s[:60] + "…"
		}
		fmt.Fprintf(&b, "%s=%s", k, s)
	}
	return b.String()
}

// RunChat sends message on workflow id and plays the approval steps until
// the agent waits for the next message; it prints the exchange to out and
// returns the final status (INPUT_REQUIRED on success).
func RunChat(ctx context.Context, c contract.DuoWorkflowClient, base Session, workflowID, message string, reject bool, out io.Writer) (string, error) {
	p := &printer{out: out, printed: map[string]int{}}
	fmt.Fprintf(out, "You: %s\n", message)
	s := base
	s.OnCheckpoint = p.checkpoint
	s.Start = &contract.StartWorkflowRequest{WorkflowID: workflowID, WorkflowDefinition: "chat", Goal: message, ClientVersion: "duo-confidential-agent-chat"}
	for range 6 {
		res, err := Run(ctx, c, s)
		if err != nil {
			fmt.Fprintln(out)
			return "", err
		}
		if res.Last == nil {
			return "", errors.New("the session ended without a checkpoint")
		}
		switch res.Last.GetStatus() {
		case "TOOL_CALL_APPROVAL_REQUIRED":
			next := &contract.StartWorkflowRequest{WorkflowID: workflowID, WorkflowDefinition: "chat", ClientVersion: s.Start.ClientVersion}
			if reject {
				fmt.Fprint(out, " → rejecting (--reject)")
				msg := "rejected from the command line"
				next.Approval = &contract.Approval{UserDecision: &contract.Approval_Rejection{Rejection: &contract.Approval_Rejected{Message: &msg}}}
			} else {
				fmt.Fprint(out, " → approving (use --reject to refuse)")
				next.Approval = &contract.Approval{UserDecision: &contract.Approval_Approval{Approval: &contract.Approval_Approved{}}}
			}
			s.Start = next
		default:
			fmt.Fprintf(out, "\n[%s]\n", res.Last.GetStatus())
			return res.Last.GetStatus(), nil
		}
	}
	return "", errors.New("too many approval rounds")
}
