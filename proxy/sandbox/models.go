package sandbox

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// OwnedBy is the owner every sandbox model reports.
const OwnedBy = "duo-confidential-sandbox (NOT CONFIDENTIAL)"

// Model tasks, as the real inference-proxy adds them to /v1/models.
const (
	TaskGenerate    = "generate"
	TaskToolCalling = "tool_calling"
	TaskEmbed       = "embed"
	TaskTranscribe  = "transcribe"
)

// Sandbox model ids.
const (
	ModelChat    = "sandbox-chat"
	ModelCode    = "sandbox-code"
	ModelEmbed   = "sandbox-embed"
	ModelWhisper = "sandbox-whisper"
)

// Model is one entry of /v1/models.
type Model struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	OwnedBy string   `json:"owned_by"`
	Tasks   []string `json:"tasks"`
	// Description says what the deterministic model does.
	Description string `json:"description"`
}

// modelCreated is a fixed creation time, so listings are reproducible.
const modelCreated = 1767225600 // 2026-01-01T00:00:00Z

// Models lists the sandbox's models.
var Models = []Model{
	{ID: ModelChat, Tasks: []string{TaskGenerate, TaskToolCalling},
		Description: "sandbox chat model (NOT CONFIDENTIAL): deterministic replies derived from the last user message; tool calls on request"},
	{ID: ModelCode, Tasks: []string{TaskGenerate},
		Description: "sandbox code model (NOT CONFIDENTIAL): deterministic completions and fill-in-the-middle with prompt+suffix"},
	{ID: ModelEmbed, Tasks: []string{TaskEmbed},
		Description: "sandbox embedding model (NOT CONFIDENTIAL): unit vectors from a hash of the input"},
	{ID: ModelWhisper, Tasks: []string{TaskTranscribe},
		Description: "sandbox transcription model (NOT CONFIDENTIAL): text derived from a hash of the audio file"},
}

func init() {
	for i := range Models {
		Models[i].Object = "model"
		Models[i].Created = modelCreated
		Models[i].OwnedBy = OwnedBy
	}
}

// modelTask reports whether model id exists and supports task.
func modelTask(id, task string) (known, ok bool) {
	for _, m := range Models {
		if m.ID == id {
			for _, t := range m.Tasks {
				if t == task {
					return true, true
				}
			}
			return true, false
		}
	}
	return false, false
}

// handleModels answers GET /v1/models and /v1/models/{id}: plaintext, no
// attestation or secret needed, as upstream.
func (s *Server) handleModels(ctx *fasthttp.RequestCtx, id string) {
	ctx.Response.Header.Set("Privatemode-Encrypted", "false")
	if id == "" {
		writeJSON(ctx, fasthttp.StatusOK, struct {
			Object string  `json:"object"`
			Data   []Model `json:"data"`
		}{"list", Models})
		return
	}
	for _, m := range Models {
		if m.ID == id {
			writeJSON(ctx, fasthttp.StatusOK, m)
			return
		}
	}
	b, _ := json.Marshal(id)
	protocolError(ctx, fasthttp.StatusNotFound, "The model "+string(b)+" does not exist in the sandbox.")
}
