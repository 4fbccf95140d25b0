package agentplatform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// HeaderModelMetadata carries the self-hosted model GitLab selected.
const HeaderModelMetadata = "x-gitlab-agent-platform-model-metadata"

// maxModelMetadataBytes bounds the header before parsing (a few hundred
// bytes in practice).
const maxModelMetadataBytes = 8 << 10

// ModelMetadata is the part of GitLab's model metadata the service reads.
// The endpoint and api_key GitLab sends are never used: every call goes to
// the attesting proxy.
type ModelMetadata struct {
	Provider   string `json:"provider"`
	Name       string `json:"name"`
	Identifier string `json:"identifier"`
}

// Errors of ParseModelMetadata; each ends the session, never a fallback.
var (
	ErrNoModelMetadata = errors.New("GitLab sent no model metadata: assign a self-hosted model of this appliance to the Agent Platform features")
	ErrGitLabModel     = errors.New("GitLab selected a GitLab-hosted model: this appliance serves only its own confidential models")
)

// ParseModelMetadata validates the x-gitlab-agent-platform-model-metadata
// header: absent, malformed, oversized or provider "gitlab" are errors.
// Error texts never quote the header (it holds an API key).
func ParseModelMetadata(h string) (ModelMetadata, error) {
	var m ModelMetadata
	if strings.TrimSpace(h) == "" {
		return m, ErrNoModelMetadata
	}
	if len(h) > maxModelMetadataBytes {
		return m, fmt.Errorf("model metadata exceeds %d bytes", maxModelMetadataBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(h)))
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil || dec.More() {
		return m, errors.New("model metadata is not a JSON object")
	}
	str := func(k string) (string, error) {
		v, ok := raw[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("model metadata field %q is not a string", k)
		}
		return s, nil
	}
	var err error
	if m.Provider, err = str("provider"); err != nil {
		return ModelMetadata{}, err
	}
	if m.Name, err = str("name"); err != nil {
		return ModelMetadata{}, err
	}
	if m.Identifier, err = str("identifier"); err != nil {
		return ModelMetadata{}, err
	}
	switch {
	case strings.EqualFold(m.Provider, "gitlab"):
		return ModelMetadata{}, ErrGitLabModel
	case m.Provider == "":
		return ModelMetadata{}, errors.New("model metadata has no provider")
	case m.Identifier == "" && m.Name == "":
		return ModelMetadata{}, errors.New("model metadata names no model")
	}
	// LiteLLM's prefix: GitLab stores "custom_openai/<model>".
	m.Identifier = strings.TrimPrefix(m.Identifier, "custom_openai/")
	return m, nil
}
