package gateway

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/prompts"
	"github.com/valyala/fasthttp"
)

// ModelMetadata is what GitLab says about the self-hosted model of a
// feature: top-level model_metadata (chat, prompts, generations) or the
// flat model_* fields (completions, legacy chat). The gateway uses only the
// identifier, and only when the operator allows it; endpoint and api_key are
// never used (every call goes through the attesting proxy).
type ModelMetadata struct {
	Provider   string `json:"provider"`
	Name       string `json:"name"` // family: general, mistral, codestral, …
	Endpoint   string `json:"endpoint"`
	APIKey     string `json:"api_key"`
	Identifier string `json:"identifier"`
}

// Models decides which proxy model serves each feature.
type Models struct {
	// ByFeature maps a feature to a model id of the proxy's /v1/models.
	ByFeature map[prompts.Feature]string
	// Default serves features without their own entry.
	Default string
	// Allowed lists the model ids a GitLab model identifier may select. An
	// identifier that names none of them is refused; with an empty list,
	// GitLab's identifier is ignored and the configured model is used.
	Allowed []string
	// CompletionFormat selects the fill-in-the-middle prompt format of code
	// completions (prompts.FIMChat unless the model has FIM tokens).
	CompletionFormat prompts.FIMFormat
	Logger           *slog.Logger

	warned warnOnce // endpoint hosts and identifiers already logged
}

// For returns the configured model of f.
func (m *Models) For(f prompts.Feature) string {
	if id := m.ByFeature[f]; id != "" {
		return id
	}
	return m.Default
}

// All lists every configured model id (for the startup check), sorted.
func (m *Models) All() []string {
	set := map[string]bool{}
	if m.Default != "" {
		set[m.Default] = true
	}
	for _, id := range m.ByFeature {
		if id != "" {
			set[id] = true
		}
	}
	for _, id := range m.Allowed {
		if id != "" {
			set[id] = true
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Pick returns the model for feature f given GitLab's metadata. A foreign
// endpoint is logged once and ignored. An identifier is honoured only when
// it names an allowed model; otherwise, when an allowlist is set, the call
// is refused so an operator sees the mismatch instead of a silent
// substitution.
func (m *Models) Pick(f prompts.Feature, md ModelMetadata) (string, error) {
	if md.Endpoint != "" {
		host := clip(endpointHost(md.Endpoint))
		m.once("endpoint:"+host, "GitLab named a model endpoint; it is ignored: every model call goes through the attesting proxy",
			"feature", string(f), "endpoint_host", host)
	}
	id := normalizeIdentifier(md.Identifier)
	if id != "" && len(m.Allowed) > 0 {
		if slices.Contains(m.Allowed, id) {
			return id, nil
		}
		return "", errorf(fasthttp.StatusUnprocessableEntity,
			fmt.Sprintf("model %q is not allowed by the appliance; allowed: %s", clip(id), strings.Join(m.Allowed, ", ")), nil)
	}
	if id != "" {
		id = clip(id)
		m.once("identifier:"+id, "GitLab named a model identifier; the appliance's configured model is used (set gateway.allowed_models to honour identifiers)",
			"feature", string(f), "identifier", id, "model", m.For(f))
	}
	model := m.For(f)
	if model == "" {
		return "", errorf(fasthttp.StatusServiceUnavailable, "no model is configured for "+string(f)+" (gateway.models)", nil)
	}
	return model, nil
}

func (m *Models) once(key, msg string, args ...any) {
	if m.Logger == nil {
		return
	}
	switch first, summary := m.warned.check(key, time.Now()); {
	case first:
		m.Logger.Warn(msg, args...)
	case summary > 0:
		m.Logger.Warn("GitLab keeps naming new model identifiers or endpoints; not logging each", "not_logged", summary)
	}
}

// normalizeIdentifier strips LiteLLM's provider prefix ("custom_openai/",
// "openai/"), as GitLab's gateway does before calling the endpoint.
func normalizeIdentifier(id string) string {
	id = strings.TrimSpace(id)
	for _, p := range []string{"custom_openai/", "openai/", "hosted_vllm/"} {
		if rest, ok := strings.CutPrefix(id, p); ok {
			return rest
		}
	}
	return id
}

// endpointHost returns only the host of an endpoint URL, for logs (the URL
// could carry credentials).
func endpointHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable)"
	}
	return u.Hostname()
}
