package gateway

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// Prompt component types of /v3 and /v4 (ai_gateway/code_suggestions/handler.py).
const (
	componentCompletion = "code_editor_completion"
	componentGeneration = "code_editor_generation"
	componentContext    = "code_context"
)

// railsDefaultInstruction is the user_instruction Rails sends when the
// user gave none (ee/lib/code_suggestions/prompts/code_generation/
// ai_gateway_messages.rb). It says nothing, so the comment above the
// cursor, which is how users ask for code in the editor, is used instead.
const railsDefaultInstruction = "Generate the best possible code based on instructions."

// suggestionsRequest is the body of POST /v3/code/completions and
// /v4/code/suggestions.
type suggestionsRequest struct {
	PromptComponents []promptComponent `json:"prompt_components"`
	ModelMetadata    *ModelMetadata    `json:"model_metadata"`
}

// promptComponent is one element of prompt_components; its type selects
// which of the payload's fields apply.
type promptComponent struct {
	Type    string           `json:"type"`
	Payload componentPayload `json:"payload"`
}

// componentPayload is the union of the code_editor_completion,
// code_editor_generation and code_context payloads.
type componentPayload struct {
	editorFile
	Stream         bool            `json:"stream"`
	PromptEnhancer *promptEnhancer `json:"prompt_enhancer"`
	// code_context
	Type    string `json:"type"`
	Name    string `json:"name"`
	Content string `json:"content"`
}

// promptEnhancer is what Rails adds to a generation for GitLab's prompt
// template. GitLab's schema types it as a free-form object, so fields of
// an unexpected type are ignored rather than refused.
type promptEnhancer struct {
	TrimmedContentAboveCursor lenientText `json:"trimmed_content_above_cursor"`
	TrimmedContentBelowCursor lenientText `json:"trimmed_content_below_cursor"`
	RelatedFiles              lenientList `json:"related_files"`
	RelatedSnippets           lenientList `json:"related_snippets"`
	Libraries                 lenientList `json:"libraries"`
	UserInstruction           lenientText `json:"user_instruction"`
}

// lenientText is a JSON string; any other value decodes as "".
type lenientText string

func (t *lenientText) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = lenientText(s)
	}
	return nil
}

// lenientList is a list of strings or of {name, content} objects; other
// values are skipped.
type lenientList []string

func (l *lenientList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	for _, r := range raw {
		var s string
		if json.Unmarshal(r, &s) == nil {
			*l = append(*l, s)
			continue
		}
		var o struct {
			Name    lenientText `json:"name"`
			Content lenientText `json:"content"`
		}
		if json.Unmarshal(r, &o) == nil {
			if x := strings.TrimSpace(string(o.Name) + "\n" + string(o.Content)); x != "" {
				*l = append(*l, x)
			}
		}
	}
	return nil
}

// validate checks the components and returns the one to serve: GitLab
// serves the first; a leading code_context (which GitLab answers with
// null) is skipped to the first editor component.
func (r *suggestionsRequest) validate() (*promptComponent, error) {
	n := len(r.PromptComponents)
	if n == 0 || n > maxComponents {
		return nil, invalid("prompt_components must have 1 to %d items, not %d", maxComponents, n)
	}
	var main *promptComponent
	for i := range r.PromptComponents {
		pc := &r.PromptComponents[i]
		field := "prompt_components[" + strconv.Itoa(i) + "].payload"
		switch pc.Type {
		case componentCompletion, componentGeneration:
			if err := pc.Payload.validate(field); err != nil {
				return nil, err
			}
			if main == nil {
				main = pc
			}
		case componentContext:
			p := pc.Payload
			if tooLong(p.Type, maxContextLabel) || tooLong(p.Name, maxContextLabel) || tooLong(p.Content, maxContextContent) {
				return nil, invalid("%s is too long (type and name at most %d, content at most %d characters)", field, maxContextLabel, maxContextContent)
			}
		default:
			return nil, invalid("prompt_components[%d].type must be %s, %s or %s", i, componentCompletion, componentGeneration, componentContext)
		}
	}
	if main == nil {
		return nil, invalid("prompt_components has no %s or %s", componentCompletion, componentGeneration)
	}
	return main, nil
}

// contexts returns the code_context components as context items.
func (r *suggestionsRequest) contexts() []contextItem {
	var out []contextItem
	for _, pc := range r.PromptComponents {
		if pc.Type == componentContext {
			out = append(out, contextItem{pc.Payload.Type, pc.Payload.Name, pc.Payload.Content})
		}
	}
	return out
}

// handleSuggestionsV3 serves POST /v3/code/completions.
func (s *Server) handleSuggestionsV3(c *call) error { return s.handleSuggestions(c, shapeV3) }

// handleSuggestionsV4 serves POST /v4/code/suggestions (SSE streams).
func (s *Server) handleSuggestionsV4(c *call) error { return s.handleSuggestions(c, shapeV4) }

// handleSuggestions serves a /v3 or /v4 request. The route admits either
// scope; each component type needs its own (complete_code for
// completions, generate_code for generations).
func (s *Server) handleSuggestions(c *call, sh shape) error {
	var req suggestionsRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	main, err := req.validate()
	if err != nil {
		return err
	}
	var md ModelMetadata
	if req.ModelMetadata != nil {
		md = *req.ModelMetadata
	}
	p := main.Payload
	var sg *suggestion
	if main.Type == componentCompletion {
		if err := mayComplete(c.claims); err != nil {
			return err
		}
		sg, err = s.completion(c, p.editorFile, req.contexts(), md, p.Stream, sh)
	} else {
		if err := mayGenerate(c.claims); err != nil {
			return err
		}
		sg, err = s.generation(c, generationInput(p, req.contexts()), md, p.Stream, sh)
	}
	if err != nil {
		return err
	}
	return s.suggest(c, sg)
}

// generationInput maps a code_editor_generation payload to the prompt
// builder's input. Rails' prompt_enhancer carries the related files and
// snippets it collected; the IDE's code_context components are used when
// it has none.
func generationInput(p componentPayload, contexts []contextItem) prompts.GenerationInput {
	in := prompts.GenerationInput{FileName: p.FileName, LanguageHint: p.LanguageIdentifier,
		Prefix: p.ContentAboveCursor, Suffix: p.ContentBelowCursor}
	pe := p.PromptEnhancer
	if pe == nil {
		in.RelatedCode = renderContext(contexts)
		return in
	}
	if in.Prefix == "" && in.Suffix == "" {
		in.Prefix, in.Suffix = string(pe.TrimmedContentAboveCursor), string(pe.TrimmedContentBelowCursor)
	}
	if instr := strings.TrimSpace(string(pe.UserInstruction)); instr != railsDefaultInstruction {
		in.Instruction = instr
	}
	in.RelatedCode = append(append(in.RelatedCode, pe.RelatedFiles...), pe.RelatedSnippets...)
	if len(pe.Libraries) > 0 {
		in.RelatedCode = append(in.RelatedCode, "Libraries the project uses: "+strings.Join(pe.Libraries, ", "))
	}
	if len(in.RelatedCode) == 0 {
		in.RelatedCode = renderContext(contexts)
	}
	return in
}

// generation prepares a code generation: chat messages with the code
// around the cursor and the instruction.
func (s *Server) generation(c *call, in prompts.GenerationInput, md ModelMetadata, stream bool, sh shape) (*suggestion, error) {
	id, err := s.o.Models.Pick(prompts.CodeGenerations, md)
	if err != nil {
		return nil, err
	}
	gp := prompts.Generation(in)
	return &suggestion{
		shape: sh, stream: stream, model: id, lang: langID(in.FileName, in.LanguageHint),
		chat: chatRequest(id, gp.Messages, gp.Settings), timeout: s.o.Timeouts.Generations, flags: enabledFeatureFlags(c),
		clean: modeloutput.CleanContext{Prefix: in.Prefix, Suffix: in.Suffix, FileName: in.FileName, Generation: true},
	}, nil
}

// handleGenerationsV2 serves the legacy POST /v2/code/generations (not
// used by GitLab 18.x): the /v2 completion body, answered like /v2
// completions. A prompt Rails prepared for a vendor model is not used.
func (s *Server) handleGenerationsV2(c *call) error {
	var req completionRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	f := req.CurrentFile
	in := prompts.GenerationInput{FileName: f.FileName, LanguageHint: f.LanguageIdentifier,
		Prefix: f.ContentAboveCursor, Suffix: f.ContentBelowCursor, RelatedCode: renderContext(req.Context)}
	sg, err := s.generation(c, in, req.metadata(), req.Stream, shapeV2)
	if err != nil {
		return err
	}
	return s.suggest(c, sg)
}
