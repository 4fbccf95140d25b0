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

// Message is one OpenAI chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatRequest is an OpenAI /v1/chat/completions request. Stream is set by
// the client's streaming methods.
type ChatRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
	Stop        []string  `json:"stop,omitempty"`
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
