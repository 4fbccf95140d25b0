package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// promptRequest is the body of POST /v1/prompts/<id> and /v2/prompts/<id>
// (GitLab's PromptRequest, ai_gateway/api/v1/prompts/invoke.py).
type promptRequest struct {
	// Inputs are the prompt's template variables; required, like
	// GitLab's gateway requires them (Rails sends {} for the check).
	Inputs        map[string]any `json:"inputs"`
	PromptVersion *string        `json:"prompt_version"`
	Stream        bool           `json:"stream"`
	ModelMetadata *ModelMetadata `json:"model_metadata"`
}

// promptScopes lists, per prompt served on /v1/prompts, the unit
// primitives of which the token must hold one: the unit_primitives of
// GitLab's prompt definitions (ai_gateway/prompts/definitions/<id>/
// {base,litellm}/*.yml). GitLab puts every entitled primitive in the token,
// so a refusal here means the instance is not entitled to the feature.
var promptScopes = map[prompts.Feature][]string{
	prompts.ChatExplainCode:          {"explain_code"},
	prompts.ChatWriteTests:           {"write_tests"},
	prompts.ChatRefactorCode:         {"refactor_code"},
	prompts.ChatFixCode:              {"fix_code"},
	prompts.ChatTroubleshootJob:      {"troubleshoot_job"},
	prompts.ChatSummarizeComments:    {"summarize_comments"},
	prompts.ChatExplainVulnerability: {"explain_vulnerability"},
	prompts.GenerateCommitMessage:    {"generate_commit_message"},
	prompts.SummarizeNewMergeRequest: {"summarize_new_merge_request"},
	prompts.SummarizeReview:          {"summarize_review"},
	prompts.ReviewMergeRequest:       {"review_merge_request"},
	prompts.ResolveVulnerability:     {"resolve_vulnerability"},
	// GitLab's definition says generate_issue_description; the feature's
	// own name is accepted too.
	prompts.GenerateDescription: {"generate_issue_description", "generate_description"},
	prompts.CategorizeQuestion:  {scopeDuoChat},
	prompts.GlabAskGitCommand:   {"glab_ask_git_command"},
	// The definition says complete_code (Rails tests with a mock code
	// completions setting); an instance entitled only to chat or to
	// self-hosted models must still be able to test its model.
	prompts.ModelConfigurationCheck: {scopeCompleteCode, scopeDuoChat, scopeClassicChat, "self_hosted_models"},
}

// maxPromptIDInDetail bounds the prompt id echoed in error details (it
// comes from the URL).
const maxPromptIDInDetail = 128

// handlePrompt serves POST /v1/prompts/<id>: the model's text as a JSON
// string, or raw text chunks when streaming.
func (s *Server) handlePrompt(c *call) error { return s.servePrompt(c, false) }

// handlePromptV2 serves POST /v2/prompts/<id> (Rails feature flag
// ai_prompts_v2): {"content","usage"}, or one such JSON object per line
// when streaming.
func (s *Server) handlePromptV2(c *call) error { return s.servePrompt(c, true) }

// servePrompt resolves the prompt, checks the scope, renders it and calls
// the model. Authorization comes before the body is read, as on every
// other route. Model failures are 421 {"detail":"<status>: <reason>"}:
// GitLab's Test connection button shows them as the model server's code.
func (s *Server) servePrompt(c *call, v2 bool) error {
	// fasthttp has already decoded %2F, so "model_configuration%2Fcheck"
	// and "model_configuration/check" arrive alike.
	id := strings.Trim(c.suffix, "/")
	shown := truncateDetail(id, maxPromptIDInDetail)
	f, err := prompts.LookupFeature(id)
	scopes, served := promptScopes[f]
	if err != nil || !served {
		return errorf(fasthttp.StatusNotFound, "Prompt '"+shown+"' not found", err)
	}
	if !hasAnyScope(c.claims, scopes) {
		return auth.Forbidden("Unauthorized to access '" + shown + "'")
	}
	var req promptRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Inputs == nil {
		return invalid("inputs is required: an object of the prompt's template variables")
	}
	if req.PromptVersion != nil && !validVersionConstraint(*req.PromptVersion) {
		return errorf(fasthttp.StatusUnprocessableEntity, "Invalid version constraint", nil)
	}
	if f != prompts.ModelConfigurationCheck && !hasInputs(req.Inputs) {
		return invalid("inputs of '%s' hold no template variable with content", shown)
	}
	// Every served prompt has one template; prompt_version only has to be
	// well-formed.
	p, err := prompts.Render(string(f), req.Inputs)
	if err != nil {
		if errors.Is(err, prompts.ErrUnknownPrompt) {
			return errorf(fasthttp.StatusNotFound, "Prompt '"+shown+"' not found", err)
		}
		return invalid("inputs of '%s' cannot be rendered", shown)
	}
	var md ModelMetadata
	if req.ModelMetadata != nil {
		md = *req.ModelMetadata
	}
	modelID, err := s.o.Models.Pick(f, md)
	if err != nil {
		if f == prompts.ModelConfigurationCheck {
			// Test connection shows only 421 details readably (other
			// codes it reads as detail[0].msg): say why this appliance
			// cannot serve the model the admin is testing.
			return checkRefusal(err)
		}
		return err
	}
	timeout := s.o.Timeouts.Prompts
	if f == prompts.ModelConfigurationCheck {
		timeout = s.o.Timeouts.Check
	}
	creq := promptChatRequest(modelID, p)
	if req.Stream {
		h, err := s.holdStream(c, timeout, s.chatStream(creq))
		if err != nil {
			return misdirected(err)
		}
		if v2 {
			h.relay(c, "text/event-stream", timeout, writePromptV2Chunk, func(w *streamWriter, res model.Result) error {
				return writePromptV2Usage(w, modelID, res)
			})
			return nil
		}
		h.relay(c, "text/event-stream", timeout, (*streamWriter).WriteString, nil)
		return nil
	}
	ctx, cancel := c.modelContext(timeout)
	defer cancel()
	res, err := s.o.Model.Chat(ctx, creq)
	if err != nil {
		return misdirected(modelError(ctx, err))
	}
	// Reasoning models (gpt-oss, Qwen3) may leave <think> blocks in the
	// text; a commit message or summary must not carry them.
	text := modeloutput.StripReasoning(res.Text)
	if v2 {
		return c.writeJSON(promptV2Response{Content: text, Usage: promptUsage(modelID, res)})
	}
	return c.writeJSON(text)
}

// promptChatRequest turns a rendered prompt into the model call.
func promptChatRequest(modelID string, p prompts.ChatPrompt) model.ChatRequest {
	msgs := make([]model.Message, len(p.Messages))
	for i, m := range p.Messages {
		msgs[i] = model.Message{Role: m.Role, Content: m.Content}
	}
	temp := p.Settings.Temperature
	return model.ChatRequest{Model: modelID, Messages: msgs, MaxTokens: p.Settings.MaxTokens, Temperature: &temp, Stop: p.Settings.Stop}
}

// promptV2Response is the /v2/prompts answer (GitLab's PromptResponse,
// ai_gateway/api/v2/prompts/invoke.py); usage is left out when unknown.
type promptV2Response struct {
	Content string                `json:"content"`
	Usage   map[string]tokenUsage `json:"usage,omitempty"`
}

// tokenUsage is GitLab's per-model token count.
type tokenUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// promptUsage keys the call's usage by the model that answered, as
// GitLab's TokenUsage does; nil when the backend reported none.
func promptUsage(modelID string, res model.Result) map[string]tokenUsage {
	if res.Usage.PromptTokens == 0 && res.Usage.CompletionTokens == 0 {
		return nil
	}
	name := res.Model
	if name == "" {
		name = modelID
	}
	return map[string]tokenUsage{name: {InputTokens: res.Usage.PromptTokens, OutputTokens: res.Usage.CompletionTokens}}
}

// writePromptV2Chunk writes one {"content": delta} line. GitLab's gateway
// sends these JSON lines with Content-Type text/event-stream, and so do we.
func writePromptV2Chunk(w *streamWriter, text string) error {
	return writeJSONLine(w, promptV2Response{Content: text})
}

// writePromptV2Usage ends a v2 stream with the usage line, when known.
func writePromptV2Usage(w *streamWriter, modelID string, res model.Result) error {
	u := promptUsage(modelID, res)
	if u == nil {
		return nil
	}
	return writeJSONLine(w, promptV2Response{Usage: u})
}

func writeJSONLine(w *streamWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode stream line: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// checkRefusal turns the appliance's own refusal of the model under test
// (not allowed, none configured) into the 421 GitLab displays.
func checkRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Status: fasthttp.StatusMisdirectedRequest, Detail: fmt.Sprintf("%d: %s", e.Status, e.Detail), Cause: err}
	}
	return err
}

// hasAnyScope reports whether the token grants one of scopes.
func hasAnyScope(c *auth.Claims, scopes []string) bool {
	for _, s := range scopes {
		if c.HasScope(s) {
			return true
		}
	}
	return false
}

// hasInputs reports whether inputs hold any variable with content (the
// current_date GitLab's gateway adds itself does not count). Which names
// a template needs is left to prompts.Render, which keeps inputs it does
// not know as extra context, so a renamed GitLab variable still works.
func hasInputs(inputs map[string]any) bool {
	for k, v := range inputs {
		if k == "current_date" {
			continue
		}
		switch x := v.(type) {
		case nil:
		case string:
			if strings.TrimSpace(x) != "" {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// versionAtom is one version of a constraint: "*", "1", "1.2.x",
// "1.0.1-dev", "v2.0.0+build.1".
var versionAtom = regexp.MustCompile(`^(\*|[vV]?[0-9]+(\.([0-9]+|\*|x|X)){0,3}([-.+_]?[0-9A-Za-z]+([-.+_][0-9A-Za-z]+)*)?)$`)

// versionOps are the operators of Poetry's constraint syntax, longest
// first.
var versionOps = []string{">=", "<=", "!=", "==", "~=", "^", "~", ">", "<", "="}

// validVersionConstraint reports whether s parses as a prompt_version
// constraint in the syntax GitLab's gateway accepts (Poetry's: "^1.0.0",
// "~2.1", ">=1.0.0,<2.0.0", "1.0.1-dev", "1.* || 2.*"); empty means the
// latest. GitLab answers 422 "Invalid version constraint" otherwise.
func validVersionConstraint(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" {
		return true
	}
	if len(s) > 100 {
		return false
	}
	for _, alt := range strings.Split(s, "||") {
		for _, part := range strings.Split(alt, ",") {
			if !validConstraintList(strings.Fields(part)) {
				return false
			}
		}
	}
	return true
}

// validConstraintList checks space-separated constraints; an operator may
// stand apart from its version (">= 1.0").
func validConstraintList(fields []string) bool {
	if len(fields) == 0 {
		return false
	}
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		op := ""
		for _, o := range versionOps {
			if strings.HasPrefix(f, o) {
				op = o
				break
			}
		}
		rest := f[len(op):]
		if rest == "" && op != "" && i+1 < len(fields) {
			i++
			rest = fields[i]
		}
		if !versionAtom.MatchString(rest) {
			return false
		}
	}
	return true
}

// truncateDetail cuts s to at most n bytes at a UTF-8 boundary, marking
// the cut.
func truncateDetail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
