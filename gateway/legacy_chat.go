package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// legacyInvokable is one /v1/chat/<invokable>: the feature whose model
// and settings serve it, and the unit primitive GitLab's gateway requires
// (CHAT_INVOKABLES in ai_gateway/api/v1/chat/agent.py).
type legacyInvokable struct {
	feature prompts.Feature
	scope   string
}

// legacyInvokables are the invokables GitLab's gateway routes; others are 404.
var legacyInvokables = map[string]legacyInvokable{
	"agent":                 {prompts.DuoChat, scopeDuoChat},
	"explain_code":          {prompts.ChatExplainCode, scopeDuoChat},
	"write_tests":           {prompts.ChatWriteTests, scopeDuoChat},
	"refactor_code":         {prompts.ChatRefactorCode, scopeDuoChat},
	"explain_vulnerability": {prompts.ChatExplainVulnerability, "explain_vulnerability"},
	"summarize_comments":    {prompts.ChatSummarizeComments, "summarize_comments"},
	"troubleshoot_job":      {prompts.ChatTroubleshootJob, "troubleshoot_job"},
}

// Limits of the legacy body (ai_gateway/api/v1/chat/typing.py).
const (
	legacyMaxContentChars = 400000
	legacyMaxMessages     = 100
	legacyMaxStops        = 10
	legacyMaxStopChars    = 225
	legacyMaxTokensParam  = 8192
	// legacyMaxTokens caps max_tokens_to_sample the way GitLab's gateway
	// does for this route (it allows 8192 in the body, sends at most 4096).
	legacyMaxTokens = 4096
	// openAIMaxStops is the most stop sequences an OpenAI-compatible
	// backend accepts; further ones are dropped.
	openAIMaxStops = 4
	// legacyProvider is reported in metadata.provider: the appliance, not
	// the provider GitLab named, served the answer.
	legacyProvider = "duo-confidential"
)

// legacyChatRequest is the body of POST /v1/chat/<invokable>.
type legacyChatRequest struct {
	PromptComponents []legacyComponent `json:"prompt_components"`
	Stream           bool              `json:"stream"`
}

// legacyComponent is one prompt component; type and metadata are
// accepted and unused.
type legacyComponent struct {
	Type    string         `json:"type"`
	Payload *legacyPayload `json:"payload"`
}

// legacyPayload carries the content and GitLab's flat model fields.
type legacyPayload struct {
	// Content is a string (one user message) or a list of messages.
	Content         json.RawMessage `json:"content"`
	Provider        string          `json:"provider"`
	Model           string          `json:"model"`
	ModelEndpoint   string          `json:"model_endpoint"`
	ModelAPIKey     string          `json:"model_api_key"`
	ModelIdentifier string          `json:"model_identifier"`
	Params          *legacyParams   `json:"params"`
}

// legacyParams are the Anthropic-style sampling parameters.
type legacyParams struct {
	StopSequences     []string `json:"stop_sequences"`
	Temperature       *float64 `json:"temperature"`
	MaxTokensToSample *int     `json:"max_tokens_to_sample"`
}

// legacyChatResponse is the non-streamed answer.
type legacyChatResponse struct {
	Response string             `json:"response"`
	Metadata legacyChatMetadata `json:"metadata"`
}

// legacyChatMetadata says who answered, with which model, when.
type legacyChatMetadata struct {
	Provider  string `json:"provider"`
	Model     string `json:"model"`
	Timestamp int64  `json:"timestamp"`
}

// handleLegacyChat serves POST /v1/chat/<invokable>, the route GitLab's
// troubleshooting guide uses to check that GitLab reaches the model: the
// content goes to the model as chat messages and the answer comes back as
// {"response", "metadata"} or a raw text stream. Model failures are
// answered like the other model routes (429, 503 "Inference failed", …).
func (s *Server) handleLegacyChat(c *call) error {
	inv, ok := legacyInvokables[c.suffix]
	if !ok {
		return errorf(fasthttp.StatusNotFound, "Not found", nil)
	}
	if !c.claims.HasScope(inv.scope) {
		return auth.Forbidden("Unauthorized to access " + inv.scope)
	}
	var req legacyChatRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.PromptComponents) != 1 {
		return invalid("prompt_components must hold exactly one component, not %d", len(req.PromptComponents))
	}
	p := req.PromptComponents[0].Payload
	if p == nil {
		return invalid("prompt_components[0].payload is required")
	}
	msgs, err := parseLegacyContent(p.Content)
	if err != nil {
		return err
	}
	st, err := prompts.SettingsFor(inv.feature)
	if err != nil {
		return fmt.Errorf("settings of %s: %w", inv.feature, err)
	}
	if err := applyLegacyParams(&st, p.Params); err != nil {
		return err
	}
	modelID, err := s.o.Models.Pick(inv.feature, ModelMetadata{
		Provider: p.Provider, Name: p.Model, Endpoint: p.ModelEndpoint, APIKey: p.ModelAPIKey, Identifier: p.ModelIdentifier,
	})
	if err != nil {
		return err
	}
	temp := st.Temperature
	creq := model.ChatRequest{Model: modelID, Messages: msgs, MaxTokens: st.MaxTokens, Temperature: &temp, Stop: st.Stop}
	timeout := s.o.Timeouts.Prompts
	if req.Stream {
		h, err := s.holdStream(c, timeout, s.chatStream(creq))
		if err != nil {
			return err
		}
		h.relay(c, "text/event-stream", timeout, (*streamWriter).WriteString, nil)
		return nil
	}
	ctx, cancel := c.modelContext(timeout)
	defer cancel()
	res, err := s.o.Model.Chat(ctx, creq)
	if err != nil {
		return modelError(ctx, err)
	}
	name := res.Model
	if name == "" {
		name = modelID
	}
	return c.writeJSON(legacyChatResponse{Response: modeloutput.StripReasoning(res.Text), Metadata: legacyChatMetadata{
		Provider: legacyProvider, Model: name, Timestamp: s.o.Now().Unix(),
	}})
}

// legacyMessage is one message of a list content.
type legacyMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// parseLegacyContent reads payload.content: a non-empty string becomes
// one user message; a list of 1–100 {role, content} messages is sent as
// is (roles system, user, assistant). Errors are 422s naming what is wrong.
func parseLegacyContent(raw json.RawMessage) ([]model.Message, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, invalid("prompt_components[0].payload.content is required")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalid("prompt_components[0].payload.content is not a valid string")
		}
		if s == "" {
			return nil, invalid("prompt_components[0].payload.content is empty")
		}
		if utf8.RuneCountInString(s) > legacyMaxContentChars {
			return nil, invalid("prompt_components[0].payload.content is longer than %d characters", legacyMaxContentChars)
		}
		return []model.Message{{Role: "user", Content: s}}, nil
	case '[':
		var list []legacyMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, invalid("prompt_components[0].payload.content must be a string or a list of {role, content} messages")
		}
		if len(list) == 0 || len(list) > legacyMaxMessages {
			return nil, invalid("prompt_components[0].payload.content must hold 1 to %d messages, not %d", legacyMaxMessages, len(list))
		}
		out := make([]model.Message, len(list))
		for i, m := range list {
			switch m.Role {
			case "system", "user", "assistant":
			default:
				return nil, invalid("prompt_components[0].payload.content[%d].role must be system, user or assistant", i)
			}
			out[i] = model.Message{Role: m.Role, Content: m.Content}
		}
		return out, nil
	default:
		return nil, invalid("prompt_components[0].payload.content must be a string or a list of {role, content} messages")
	}
}

// applyLegacyParams validates params within GitLab's bounds and lays them
// over the feature's settings; absent fields keep the feature's values.
func applyLegacyParams(st *prompts.Settings, p *legacyParams) error {
	if p != nil {
		if t := p.Temperature; t != nil {
			if *t < 0 || *t > 1 {
				return invalid("params.temperature must be between 0 and 1")
			}
			st.Temperature = *t
		}
		if m := p.MaxTokensToSample; m != nil {
			if *m < 1 || *m > legacyMaxTokensParam {
				return invalid("params.max_tokens_to_sample must be between 1 and %d", legacyMaxTokensParam)
			}
			st.MaxTokens = *m
		}
		if p.StopSequences != nil {
			if len(p.StopSequences) > legacyMaxStops {
				return invalid("params.stop_sequences must hold at most %d sequences", legacyMaxStops)
			}
			stops := make([]string, 0, len(p.StopSequences))
			for i, s := range p.StopSequences {
				if utf8.RuneCountInString(s) > legacyMaxStopChars {
					return invalid("params.stop_sequences[%d] is longer than %d characters", i, legacyMaxStopChars)
				}
				if s != "" {
					stops = append(stops, s)
				}
			}
			st.Stop = stops
		}
	}
	st.MaxTokens = min(st.MaxTokens, legacyMaxTokens)
	if len(st.Stop) > openAIMaxStops {
		st.Stop = st.Stop[:openAIMaxStops]
	}
	if len(st.Stop) == 0 {
		st.Stop = nil
	}
	return nil
}
