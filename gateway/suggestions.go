package gateway

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// Limits of GitLab's request schemas (ai_gateway/api/v2/code/typing.py,
// ai_gateway/api/v4/code/typing.py); longer fields are a 422 there too.
const (
	maxFileName       = 255     // file_name, after trimming whitespace
	maxEditorContent  = 100_000 // content_above_cursor / content_below_cursor, in characters
	maxLanguageID     = 255
	maxContextItems   = 100 // context[] of /v2/code/completions
	maxContextLabel   = 1024
	maxContextContent = 500_000
	maxComponents     = 100 // prompt_components[] of /v3 and /v4
)

// suggestionEngine is the engine GitLab's gateway reports for self-hosted
// models (it calls them through LiteLLM); IDEs only display it.
const suggestionEngine = "litellm"

// msgSuggestionsForbidden is GitLab's 403 when the token lacks the unit
// primitive of a /v3 or /v4 prompt component.
const msgSuggestionsForbidden = "Unauthorized to access code suggestions"

// editorFile is current_file of /v2 (and the editor fields of a /v3
// payload).
type editorFile struct {
	FileName           string `json:"file_name"`
	LanguageIdentifier string `json:"language_identifier"`
	ContentAboveCursor string `json:"content_above_cursor"`
	ContentBelowCursor string `json:"content_below_cursor"`
}

// validate applies GitLab's limits; field names the object in messages.
func (f *editorFile) validate(field string) error {
	f.FileName = strings.TrimSpace(f.FileName)
	for _, l := range []struct {
		name, v string
		max     int
	}{
		{"file_name", f.FileName, maxFileName},
		{"language_identifier", f.LanguageIdentifier, maxLanguageID},
		{"content_above_cursor", f.ContentAboveCursor, maxEditorContent},
		{"content_below_cursor", f.ContentBelowCursor, maxEditorContent},
	} {
		if tooLong(l.v, l.max) {
			return invalid("%s.%s is longer than %d characters", field, l.name, l.max)
		}
	}
	return nil
}

// tooLong counts characters as Python does (code points).
func tooLong(s string, n int) bool {
	return len(s) > n && utf8.RuneCountInString(s) > n
}

// contextItem is one piece of extra context (an open file, a snippet)
// the IDE sends with a suggestion request.
type contextItem struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Content string `json:"content"`
}

func validateContext(items []contextItem, field string) error {
	if len(items) > maxContextItems {
		return invalid("%s has %d items, at most %d are allowed", field, len(items), maxContextItems)
	}
	for i, it := range items {
		if tooLong(it.Type, maxContextLabel) || tooLong(it.Name, maxContextLabel) || tooLong(it.Content, maxContextContent) {
			return invalid("%s[%d] is too long (type and name at most %d, content at most %d characters)", field, i, maxContextLabel, maxContextContent)
		}
	}
	return nil
}

// renderContext turns context items into the related-code blocks of the
// prompt builders, in the IDE's order (most relevant first).
func renderContext(items []contextItem) []string {
	var out []string
	for _, it := range items {
		if strings.TrimSpace(it.Content) == "" {
			continue
		}
		head := it.Name
		if it.Type != "" && it.Type != "file" {
			head = it.Type + " " + it.Name
		}
		out = append(out, strings.TrimSpace(head+"\n"+it.Content))
	}
	return out
}

// langID is the lower-case language id GitLab reports as model.lang
// ("python", "go"), or "" for an unknown language.
func langID(fileName, hint string) string {
	l, _ := prompts.DetectLanguage(fileName, hint)
	return l.Fence
}

// enabledFeatureFlags echoes X-Gitlab-Enabled-Feature-Flags as GitLab's
// gateway does (metadata.enabled_feature_flags); never nil.
func enabledFeatureFlags(c *call) []string {
	out := []string{}
	for _, f := range strings.Split(c.header("X-Gitlab-Enabled-Feature-Flags"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// mayComplete and mayGenerate are the per-component scope checks of /v3
// and /v4, whose route admits either scope. Completions, like GitLab's,
// refuse the gateway's own tokens here.
func mayComplete(c *auth.Claims) error {
	if !c.HasScope(scopeCompleteCode) || c.SelfIssued {
		return auth.Forbidden(msgSuggestionsForbidden)
	}
	return nil
}

func mayGenerate(c *auth.Claims) error {
	if !c.HasScope(scopeGenerateCode) || c.SelfIssued {
		return auth.Forbidden(msgSuggestionsForbidden)
	}
	return nil
}

// shape selects a route's response format.
type shape int

const (
	shapeV2 shape = iota // SuggestionsResponse; raw text stream
	shapeV3              // CompletionResponse; raw text stream
	shapeV4              // CompletionResponse; SSE stream
)

// suggestion is one prepared model call of a code suggestion route.
type suggestion struct {
	shape   shape
	stream  bool
	model   string // proxy model id
	lang    string
	chat    *model.ChatRequest // exactly one of chat and comp is set
	comp    *model.CompletionRequest
	timeout time.Duration
	clean   modeloutput.CleanContext
	flags   []string
}

// call runs the model call to completion.
func (sg *suggestion) call(ctx context.Context, m Model) (model.Result, error) {
	if sg.chat != nil {
		return m.Chat(ctx, *sg.chat)
	}
	return m.Complete(ctx, *sg.comp)
}

// callStream runs the model call as a stream.
func (sg *suggestion) callStream(ctx context.Context, m Model, onDelta func(string) error) (model.Result, error) {
	if sg.chat != nil {
		return m.ChatStream(ctx, *sg.chat, onDelta)
	}
	return m.CompleteStream(ctx, *sg.comp, onDelta)
}

// chatRequest converts a prompt into the model's chat request.
func chatRequest(id string, msgs []prompts.Message, st prompts.Settings) *model.ChatRequest {
	r := &model.ChatRequest{Model: id, MaxTokens: st.MaxTokens, Stop: st.Stop, Temperature: &st.Temperature}
	r.Messages = make([]model.Message, len(msgs))
	for i, m := range msgs {
		r.Messages[i] = model.Message{Role: m.Role, Content: m.Content}
	}
	return r
}

// suggest runs sg and answers in its route's shape: streamed, or one
// JSON document with the cleaned text.
func (s *Server) suggest(c *call, sg *suggestion) error {
	if sg.stream {
		return s.streamSuggestion(c, sg)
	}
	ctx, cancel := c.modelContext(sg.timeout)
	defer cancel()
	res, err := sg.call(ctx, s.o.Model)
	if err != nil {
		return modelError(ctx, err)
	}
	text := modeloutput.Clean(res.Text, sg.clean)
	choices := []suggestionChoice{}
	if text != "" {
		choices = append(choices, suggestionChoice{Text: text, FinishReason: "length"})
	}
	now := s.o.Now().Unix()
	m := suggestionModel{Engine: suggestionEngine, Name: sg.model, Lang: sg.lang}
	if sg.shape == shapeV2 {
		m.Tokens = &tokensConsumption{InputTokens: res.Usage.PromptTokens, OutputTokens: res.Usage.CompletionTokens}
		return c.writeJSON(suggestionsResponse{ID: "id", Model: m, Experiments: []struct{}{}, Object: "text_completion",
			Created: now, Choices: choices, Metadata: flagsMetadata{EnabledFeatureFlags: sg.flags}})
	}
	return c.writeJSON(completionResponse{Choices: choices,
		Metadata: responseMetadata{Model: m, Timestamp: now, EnabledFeatureFlags: sg.flags}, Model: m})
}

// suggestionChoice is one suggestion; GitLab always says "length".
type suggestionChoice struct {
	Text         string `json:"text"`
	Index        int    `json:"index"`
	FinishReason string `json:"finish_reason"`
}

// suggestionModel describes the model that answered.
type suggestionModel struct {
	Engine string             `json:"engine"`
	Name   string             `json:"name"`
	Lang   string             `json:"lang"`
	Tokens *tokensConsumption `json:"tokens_consumption_metadata,omitempty"`
}

type tokensConsumption struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type flagsMetadata struct {
	EnabledFeatureFlags []string `json:"enabled_feature_flags"`
}

// suggestionsResponse is GitLab's SuggestionsResponse (/v2).
type suggestionsResponse struct {
	ID          string             `json:"id"`
	Model       suggestionModel    `json:"model"`
	Experiments []struct{}         `json:"experiments"`
	Object      string             `json:"object"`
	Created     int64              `json:"created"`
	Choices     []suggestionChoice `json:"choices"`
	Metadata    flagsMetadata      `json:"metadata"`
}

// responseMetadata is GitLab's ResponseMetadataBase (/v3, /v4 and the v4
// stream_start event).
type responseMetadata struct {
	Model               suggestionModel `json:"model"`
	Timestamp           int64           `json:"timestamp"`
	EnabledFeatureFlags []string        `json:"enabled_feature_flags"`
}

// completionResponse is GitLab's CompletionResponse (/v3, /v4). GitLab's
// model has no top-level "model"; it is repeated there for clients that
// read it like /v2's (extra fields are ignored by GitLab's clients).
type completionResponse struct {
	Choices  []suggestionChoice `json:"choices"`
	Metadata responseMetadata   `json:"metadata"`
	Model    suggestionModel    `json:"model"`
}
