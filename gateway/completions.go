package gateway

import (
	"bytes"
	"encoding/json"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// completionRequest is the body of POST /v2/code/completions as Rails,
// Workhorse or the IDE send it (ai_gateway/api/v2/code/typing.py).
// Unknown fields (intent, project_path, telemetry, …) are ignored.
type completionRequest struct {
	CurrentFile   *editorFile     `json:"current_file"`
	PromptVersion *int            `json:"prompt_version"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	Context       []contextItem   `json:"context"`
	flatModel
}

// flatModel is the self-hosted model as flat model_* fields (/v2 routes).
type flatModel struct {
	ModelProvider   string `json:"model_provider"`
	ModelName       string `json:"model_name"`
	ModelEndpoint   string `json:"model_endpoint"`
	ModelAPIKey     string `json:"model_api_key"`
	ModelIdentifier string `json:"model_identifier"`
}

func (f flatModel) metadata() ModelMetadata {
	return ModelMetadata{Provider: f.ModelProvider, Name: f.ModelName, Endpoint: f.ModelEndpoint, APIKey: f.ModelAPIKey, Identifier: f.ModelIdentifier}
}

// maxModelName is GitLab's limit on model_name (a family such as
// "codestral" or "general"; every family is accepted here).
const maxModelName = 50

// validate checks what GitLab's schema checks. prompt_version is the
// schema's discriminator: 1 (also when absent, which GitLab's schema
// refuses but nothing is lost by accepting), 2 with an optional prompt
// string, 3 with an optional message list. A prompt Rails prepared for a vendor model is not
// used: the appliance builds its own prompt for its own model.
func (r *completionRequest) validate() error {
	if r.CurrentFile == nil {
		return invalid("current_file is required")
	}
	if err := r.CurrentFile.validate("current_file"); err != nil {
		return err
	}
	if err := validateContext(r.Context, "context"); err != nil {
		return err
	}
	if tooLong(r.ModelName, maxModelName) {
		return invalid("model_name is longer than %d characters", maxModelName)
	}
	return validatePrompt(r.PromptVersion, r.Prompt)
}

// validatePrompt checks prompt against prompt_version (1, 2 or 3).
func validatePrompt(version *int, prompt json.RawMessage) error {
	v := 1
	if version != nil {
		v = *version
	}
	null := len(prompt) == 0 || bytes.Equal(prompt, []byte("null"))
	switch v {
	case 1:
	case 2:
		var s string
		if !null && json.Unmarshal(prompt, &s) != nil {
			return invalid("prompt must be a string when prompt_version is 2")
		}
	case 3:
		var msgs []model.Message
		if !null && json.Unmarshal(prompt, &msgs) != nil {
			return invalid("prompt must be a list of messages when prompt_version is 3")
		}
	default:
		return invalid("prompt_version must be 1, 2 or 3")
	}
	return nil
}

// handleCompletions serves POST /v2/code/completions and /v2/completions.
func (s *Server) handleCompletions(c *call) error {
	var req completionRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	sg, err := s.completion(c, *req.CurrentFile, req.Context, req.metadata(), req.Stream, shapeV2)
	if err != nil {
		return err
	}
	return s.suggest(c, sg)
}

// completion prepares a code completion: the fill-in-the-middle prompt in
// the operator's format (chat messages, or a raw FIM prompt for models
// with FIM tokens), trimmed to the budget nearest the cursor, with the
// IDE's extra context where the format has room for it.
func (s *Server) completion(c *call, f editorFile, related []contextItem, md ModelMetadata, stream bool, sh shape) (*suggestion, error) {
	id, err := s.o.Models.Pick(prompts.CodeCompletions, md)
	if err != nil {
		return nil, err
	}
	cp := prompts.Completion(prompts.CompletionInput{
		FileName: f.FileName, LanguageHint: f.LanguageIdentifier,
		Prefix: f.ContentAboveCursor, Suffix: f.ContentBelowCursor,
		Format: s.o.Models.CompletionFormat, Related: renderContext(related),
	}, prompts.Budget{})
	sg := &suggestion{
		shape: sh, stream: stream, model: id, lang: langID(f.FileName, f.LanguageIdentifier),
		timeout: s.o.Timeouts.Completions, flags: enabledFeatureFlags(c),
		clean: modeloutput.CleanContext{Prefix: cp.Prefix, Suffix: cp.SuffixKept, FileName: f.FileName},
	}
	if cp.Format == prompts.FIMChat {
		sg.chat = chatRequest(id, cp.Messages, cp.Settings)
		return sg, nil
	}
	st := cp.Settings
	sg.comp = &model.CompletionRequest{Model: id, Prompt: cp.Prompt, MaxTokens: st.MaxTokens, Temperature: &st.Temperature, Stop: st.Stop}
	if cp.Format == prompts.FIMSuffixField {
		suffix := cp.Suffix
		sg.comp.Suffix = &suffix
	}
	return sg, nil
}
