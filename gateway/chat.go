package gateway

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/valyala/fasthttp"
)

// POST /v2/chat/agent: one ReAct step of Duo Chat. Rails' StepExecutor
// calls it once per iteration (at most 10), runs the tool named in an
// action event itself and calls again with the history and the scratchpad
// of earlier steps. The answer is ndjson, one {"type","data"} event a line
// (gitlab-ai-gateway.md §1.5); once the status line is out, failures are error events.

// chatAgentRequest is the body Rails sends (react_executor.rb:step_params).
// Unknown fields are ignored, as GitLab's pydantic models do.
type chatAgentRequest struct {
	Messages      []chatMessage `json:"messages"`
	ModelMetadata ModelMetadata `json:"model_metadata"`
	// UnavailableResources nil means absent: GitLab then assumes
	// "Merge Requests, Pipelines, Vulnerabilities".
	UnavailableResources *[]string `json:"unavailable_resources"`
	// Options carries the scratchpad in the older request shape.
	Options *struct {
		AgentScratchpad *struct {
			AgentType string `json:"agent_type"`
			Steps     []struct {
				Thought     string `json:"thought"`
				Tool        string `json:"tool"`
				ToolInput   string `json:"tool_input"`
				Observation string `json:"observation"`
			} `json:"steps"`
		} `json:"agent_scratchpad"`
	} `json:"options"`
}

// chatMessage is one message of the conversation.
type chatMessage struct {
	Role string `json:"role"`
	// Content is null on the assistant message that carries the
	// scratchpad of the step in progress.
	Content           *string         `json:"content"`
	Context           *pageContext    `json:"context"`
	CurrentFile       *currentFile    `json:"current_file"`
	AdditionalContext []extraContext  `json:"additional_context"`
	AgentScratchpad   *[]agentStepDTO `json:"agent_scratchpad"`
}

// pageContext is the GitLab page the user is on: {type, title} since 17.9,
// {type, content} before.
type pageContext struct {
	Type    string  `json:"type"`
	Title   *string `json:"title"`
	Content *string `json:"content"`
}

// currentFile is the file open in the editor or the selection in it.
type currentFile struct {
	FilePath     string `json:"file_path"`
	Data         string `json:"data"`
	SelectedCode bool   `json:"selected_code"`
}

// extraContext is an item the user attached (/include in the IDE).
type extraContext struct {
	Category string          `json:"category"`
	ID       *string         `json:"id"`
	Content  *string         `json:"content"`
	Metadata json.RawMessage `json:"metadata"`
}

// agentStepDTO is one earlier iteration: the action and the tool's result.
type agentStepDTO struct {
	Action *struct {
		Thought   string `json:"thought"`
		Tool      string `json:"tool"`
		ToolInput string `json:"tool_input"`
	} `json:"action"`
	Observation string `json:"observation"`
}

// contextCategories are GitLab's additional_context categories; each needs
// the unit primitive include_<category>_context.
var contextCategories = []string{"file", "snippet", "merge_request", "issue", "dependency", "local_git",
	"terminal", "repository", "directory", "os_information", "agent_user_environment"}

// defaultUnavailable is GitLab's default of unavailable_resources.
var defaultUnavailable = []string{"Merge Requests, Pipelines, Vulnerabilities"}

// ndjsonType is the Content-Type of the event stream (GitLab's
// StreamingResponse media type).
const ndjsonType = "application/x-ndjson; charset=utf-8"

// msgToolNotAvailable is GitLab's error for an action naming a tool it does
// not offer; Rails shows it as G3001.
const msgToolNotAvailable = "tool not available"

func (s *Server) handleChatAgent(c *call) error {
	var req chatAgentRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	if err := authorizeContexts(c.claims, req.Messages); err != nil {
		return err
	}
	modelID, err := s.o.Models.Pick(prompts.DuoChat, req.ModelMetadata)
	if err != nil {
		return err
	}
	st, err := prompts.SettingsFor(prompts.DuoChat)
	if err != nil {
		return fmt.Errorf("chat settings: %w", err)
	}
	unavailable := defaultUnavailable
	if req.UnavailableResources != nil {
		unavailable = *req.UnavailableResources
	}
	system := prompts.ChatSystemPrompt(chatTools, unavailable, s.o.Now().Format("Monday, January 2, 2006"))
	temp := st.Temperature
	mreq := model.ChatRequest{
		Model:       modelID,
		Messages:    buildChatMessages(system, req.Messages, req.scratchpad(), st.InputTokens),
		MaxTokens:   st.MaxTokens,
		Temperature: &temp,
		Stop:        st.Stop,
	}
	c.stream(ndjsonType, s.o.Timeouts.Chat, s.chatStep(mreq))
	return nil
}

// validate checks what GitLab's schema checks and what the prompt needs:
// known roles, the scratchpad only on assistant messages, known context
// categories, and a user question last.
func (r *chatAgentRequest) validate() error {
	if len(r.Messages) == 0 {
		return invalid("messages must not be empty")
	}
	last := -1
	for i, m := range r.Messages {
		switch m.Role {
		case "user":
			if m.Content == nil || strings.TrimSpace(*m.Content) == "" {
				return invalid("messages[%d].content must be the user's question", i)
			}
			last = i
		case "assistant":
			if m.Content != nil {
				last = i
			}
		default:
			return invalid(`messages[%d].role must be "user" or "assistant"`, i)
		}
		if m.AgentScratchpad != nil && m.Role != "assistant" {
			// GitLab's model validator raises this as a 400.
			return errorf(fasthttp.StatusBadRequest, "agent_scratchpad can only be present when role is ASSISTANT", nil)
		}
		for j, x := range m.AdditionalContext {
			if !slices.Contains(contextCategories, x.Category) {
				return invalid("messages[%d].additional_context[%d].category must be one of %s", i, j, strings.Join(contextCategories, ", "))
			}
		}
	}
	if last < 0 || r.Messages[last].Role != "user" {
		return invalid("the last message must be the user's question (or the assistant's step in progress, with content null)")
	}
	return nil
}

// scratchpad returns the earlier steps of the iteration in progress: from
// options (older Rails) or from a last assistant message with content null,
// with Markdown-escaped underscores undone as GitLab does.
func (r *chatAgentRequest) scratchpad() []prompts.ScratchpadStep {
	unescape := func(s string) string { return strings.ReplaceAll(s, `\_`, "_") }
	var steps []prompts.ScratchpadStep
	if r.Options != nil && r.Options.AgentScratchpad != nil {
		for _, st := range r.Options.AgentScratchpad.Steps {
			steps = append(steps, prompts.ScratchpadStep{Thought: unescape(st.Thought), Tool: unescape(st.Tool),
				ToolInput: st.ToolInput, Observation: st.Observation})
		}
		return steps
	}
	last := r.Messages[len(r.Messages)-1]
	if last.Role != "assistant" || last.Content != nil || last.AgentScratchpad == nil {
		return nil
	}
	for _, st := range *last.AgentScratchpad {
		if st.Action == nil {
			continue
		}
		steps = append(steps, prompts.ScratchpadStep{Thought: unescape(st.Action.Thought), Tool: unescape(st.Action.Tool),
			ToolInput: st.Action.ToolInput, Observation: st.Observation})
	}
	return steps
}

// authorizeContexts requires include_<category>_context for every attached
// context item, with GitLab's 403 text (authorize_additional_context).
func authorizeContexts(claims *auth.Claims, msgs []chatMessage) error {
	for _, m := range msgs {
		for _, x := range m.AdditionalContext {
			scope := "include_" + x.Category + "_context"
			if claims == nil || !claims.HasScope(scope) {
				return auth.Forbidden("Unauthorized to access " + scope)
			}
		}
	}
	return nil
}
