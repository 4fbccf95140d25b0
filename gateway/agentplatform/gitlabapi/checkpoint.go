package gitlabapi

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
)

// MaxCheckpointBytes bounds a decoded checkpoint (and what a compressed
// one may inflate to).
const MaxCheckpointBytes = 8 << 20

// Checkpoint is a persisted workflow state. Rails reads only
// channel_values.ui_chat_log, .status and .__start__.goal; the rest
// (Conversation) is this service's own state for resuming.
type Checkpoint struct {
	// ID is the thread_ts: a UUIDv7, so ids sort by time as strings
	// (Rails orders checkpoints by it).
	ID            string        `json:"id"`
	TS            string        `json:"ts"`
	V             int           `json:"v"`
	ChannelValues ChannelValues `json:"channel_values"`
}

// ChannelValues is the checkpoint's state.
type ChannelValues struct {
	UIChatLog    []UIChatLogEntry `json:"ui_chat_log"`
	Status       string           `json:"status,omitempty"`
	Start        *StartValues     `json:"__start__,omitempty"`
	Plan         *Plan            `json:"plan,omitempty"`
	Conversation json.RawMessage  `json:"conversation,omitempty"`
}

// StartValues holds the goal that started the workflow.
type StartValues struct {
	Goal string `json:"goal"`
}

// Plan is the step list the UI shows.
type Plan struct {
	Steps []PlanStep `json:"steps"`
}

// PlanStep is one plan entry.
type PlanStep struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Status      string `json:"status"`
}

// UIChatLogEntry is one entry of the chat log the GitLab UI renders.
type UIChatLogEntry struct {
	MessageType       string    `json:"message_type"`
	MessageSubType    *string   `json:"message_sub_type"`
	Content           string    `json:"content"`
	Timestamp         string    `json:"timestamp"`
	Status            *string   `json:"status"`
	CorrelationID     *string   `json:"correlation_id"`
	ToolInfo          *ToolInfo `json:"tool_info"`
	AdditionalContext any       `json:"additional_context"`
	MessageID         string    `json:"message_id"`
}

// ToolInfo describes a tool call in the chat log.
type ToolInfo struct {
	Name         string         `json:"name"`
	Args         map[string]any `json:"args"`
	ToolResponse any            `json:"tool_response,omitempty"`
}

// NewThreadTS returns a fresh, time-ordered checkpoint id.
func NewThreadTS() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// Encode is the checkpoint's JSON.
func (cp *Checkpoint) Encode() ([]byte, error) {
	if cp.ChannelValues.UIChatLog == nil {
		cp.ChannelValues.UIChatLog = []UIChatLogEntry{}
	}
	return json.Marshal(cp)
}

// Compress is zlib + base64 of the JSON, Rails' compressed_checkpoint.
func Compress(b []byte) string {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// DecodeCheckpoint reads a checkpoint as Rails returns it: a JSON object,
// a JSON string holding one, or a compressed (zlib+base64) string.
func DecodeCheckpoint(raw []byte) (*Checkpoint, error) {
	if len(raw) > MaxCheckpointBytes {
		return nil, fmt.Errorf("checkpoint exceeds %d bytes", MaxCheckpointBytes)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("checkpoint is not JSON")
		}
		b := []byte(s)
		if len(b) > 0 && b[0] != '{' {
			inflated, err := inflate(s)
			if err != nil {
				return nil, err
			}
			b = inflated
		}
		raw = b
	}
	var cp Checkpoint
	if err := json.Unmarshal(raw, &cp); err != nil {
		return nil, errors.New("checkpoint is not a JSON object of the expected shape")
	}
	return &cp, nil
}

func inflate(s string) ([]byte, error) {
	z, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("compressed checkpoint is not base64")
	}
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, errors.New("compressed checkpoint is not zlib")
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, MaxCheckpointBytes+1))
	if err != nil {
		return nil, errors.New("compressed checkpoint is corrupt")
	}
	if len(b) > MaxCheckpointBytes {
		return nil, fmt.Errorf("checkpoint inflates beyond %d bytes", MaxCheckpointBytes)
	}
	return b, nil
}

// SaveCheckpoint persists cp (POST …/workflows/:id/checkpoints), compressed
// when GitLab asked for it (feature flag duo_workflow_compress_checkpoint).
func (c *Client) SaveCheckpoint(ctx context.Context, workflowID string, cp *Checkpoint, parentTS string, compress bool) error {
	if cp.ID == "" {
		cp.ID = NewThreadTS()
	}
	if cp.TS == "" {
		cp.TS = time.Now().UTC().Format(time.RFC3339Nano)
	}
	cp.V = 1
	b, err := cp.Encode()
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	body := map[string]any{
		"thread_ts": cp.ID,
		"metadata":  map[string]any{"source": "loop", "writes": map[string]any{}},
	}
	if parentTS != "" {
		body["parent_ts"] = parentTS
	}
	if compress {
		body["compressed_checkpoint"] = Compress(b)
	} else {
		body["checkpoint"] = json.RawMessage(b)
	}
	return c.JSON(ctx, "POST", "/api/v4/ai/duo_workflows/workflows/"+workflowID+"/checkpoints", body, nil)
}
