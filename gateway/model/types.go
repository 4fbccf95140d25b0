// Package model is the gateway's only way to reach a language model: an
// OpenAI-compatible client of the in-process attesting proxy.
//
// The client is given a dialer, not a URL: the appliance wires it to an
// in-memory listener of the proxy, so no request the gateway builds can go
// anywhere but through attestation and encryption, whatever endpoint GitLab
// names in model_metadata.
package model

import (
	"fmt"
	"time"
)

// Message is one OpenAI chat message. An assistant message may carry
// ToolCalls; a "tool" message answers one by ToolCallID.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// Tool is a function the model may call (OpenAI "tools" entry).
type Tool struct {
	Type     string       `json:"type"` // "function"
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a callable function; Parameters is a JSON Schema.
type ToolFunction struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Parameters  map[string]any `json:"parameters,omitempty"`
}

// ToolCall is one call the model made; Arguments is a JSON text.
type ToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction names the function and its JSON arguments.
type ToolCallFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// MaxToolCalls bounds the tool calls one answer may make.
const MaxToolCalls = 32

// ChatRequest is an OpenAI /v1/chat/completions request. Stream is set by
// the client's streaming methods.
type ChatRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
	Stop        []string  `json:"stop,omitempty"`
	// Tools offered to the model; ToolChoice is "auto", "required",
	// "none" or a named function (nil: the backend's default).
	Tools      []Tool `json:"tools,omitempty"`
	ToolChoice any    `json:"tool_choice,omitempty"`
}

// CompletionRequest is a legacy /v1/completions request, used for
// fill-in-the-middle prompts with model-specific FIM tokens or the suffix
// field.
type CompletionRequest struct {
	Model       string   `json:"model"`
	Prompt      string   `json:"prompt"`
	Suffix      *string  `json:"suffix,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	Stop        []string `json:"stop,omitempty"`
}

// Usage is the token accounting of one call.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Result is a finished call: the whole generated text (for streams, the
// concatenation of every delta), why it ended and the usage when the
// backend reported it.
type Result struct {
	Model        string
	Text         string
	FinishReason string
	Usage        Usage
	// ToolCalls are the calls of a chat answer, assembled from stream
	// deltas, in index order.
	ToolCalls []ToolCall
}

// Error is a failure reported by the proxy or the model behind it, with the
// HTTP status the proxy answered (502 for a broken stream). Message is the
// proxy's client-facing text; it never holds prompt content.
type Error struct {
	Status     int
	Type       string
	Message    string
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("model: %d %s: %s", e.Status, e.Type, e.Message)
}

// Retryable reports whether the same call may succeed later (rate limit,
// backend not ready, upstream trouble).
func (e *Error) Retryable() bool {
	return e.Status == 429 || e.Status == 502 || e.Status == 503 || e.Status == 504
}
