package gitlabconnect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/Khan/genqlient/graphql"

	gql "github.com/duo-confidential/duo-confidential/gateway/gitlabconnect/internal/gitlabgql"
)

// Instance is who and what the token reached.
type Instance struct {
	URL      string `json:"url"`
	Version  string `json:"version"`
	Username string `json:"username"`
}

// Settings are GitLab's instance AI settings (duoSettings).
type Settings struct {
	AIGatewayURL     string `json:"ai_gateway_url"`
	AgentPlatformURL string `json:"agent_platform_url"`
	TimeoutSeconds   int    `json:"timeout_seconds"`
}

// ModelRecord is one of GitLab's self-hosted model records.
type ModelRecord struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Family     string `json:"family"` // the database value, e.g. general
	Endpoint   string `json:"endpoint"`
	Identifier string `json:"identifier"`
}

// FeatureSetting is one row of aiFeatureSettings.
type FeatureSetting struct {
	Feature   string `json:"feature"` // AiFeatures value, e.g. CODE_COMPLETIONS
	Title     string `json:"title"`
	Provider  string `json:"provider"` // self_hosted, vendored, disabled, unassigned
	ModelID   string `json:"model_id,omitempty"`
	ModelName string `json:"model_name,omitempty"`
}

// Snapshot is what GitLab is configured to do now.
type Snapshot struct {
	Instance Instance
	Settings Settings
	// Features are the AiFeatures enum values (introspected), Families the
	// AiAcceptedSelfHostedModels values.
	Features, Families []string
	// Settings by feature, as listed by aiFeatureSettings. An enum value
	// that is not listed is Hidden (GitLab lists beta features only after
	// the self-hosted beta terms are accepted).
	Rows   map[string]FeatureSetting
	Hidden []string
	// Models by name: the listed ones plus those found by id (features'
	// models and the ids this appliance created earlier).
	Models map[string]ModelRecord
}

// GateError is a closed preflight gate: nothing was changed, and Fix says
// what the admin has to do.
type GateError struct {
	Gate, Problem, Fix string
}

func (e *GateError) Error() string { return e.Problem + ": " + e.Fix }

// Preflight checks the token, the user and the licence, and reads the
// instance's identity and AI settings. Every failure is a *GateError or an
// ErrUnreachable; nothing is changed either way.
func (c *Client) Preflight(ctx context.Context) (Instance, Settings, error) {
	in := Instance{URL: c.GitLabURL()}
	ti, err := c.TokenSelf(ctx)
	if err != nil {
		if errors.Is(err, ErrUnreachable) {
			return in, Settings{}, err
		}
		return in, Settings{}, &GateError{Gate: "token", Problem: err.Error(),
			Fix: "create a personal access token with the api scope (and admin_mode if Admin Mode is on) as an instance administrator: User settings → Access tokens"}
	}
	if ti.Known && (!ti.Active || ti.Revoked) {
		return in, Settings{}, &GateError{Gate: "token", Problem: fmt.Sprintf("the token %q is not active (revoked or expired %s)", ti.Name, ti.ExpiresAt),
			Fix: "create a new personal access token with the api scope"}
	}
	if ti.Known && !slices.Contains(ti.Scopes, "api") {
		return in, Settings{}, &GateError{Gate: "token", Problem: fmt.Sprintf("the token %q has the scopes [%s] but changing GitLab's AI settings needs the api scope", ti.Name, strings.Join(ti.Scopes, ", ")),
			Fix: "create a personal access token with the api scope (plus admin_mode if Admin Mode is on); read_api is only enough to read"}
	}
	var pf *gql.PreflightResponse
	err = c.call(ctx, false, func(ctx context.Context, g graphql.Client) (err error) { pf, err = gql.Preflight(ctx, g); return err })
	if err != nil {
		return in, Settings{}, gateOr(err, "user", "GitLab refused to say who the token belongs to")
	}
	if pf.CurrentUser == nil {
		return in, Settings{}, &GateError{Gate: "token", Problem: "GitLab does not know the token's user (currentUser is null)",
			Fix: "use a personal access token of an instance administrator with the api scope"}
	}
	in.Username = pf.CurrentUser.Username
	if pf.Metadata != nil {
		in.Version = pf.Metadata.Version
		if !pf.Metadata.Enterprise {
			return in, Settings{}, &GateError{Gate: "edition", Problem: "GitLab " + in.Version + " is the Community Edition, which has no GitLab Duo Self-Hosted",
				Fix: "install GitLab Enterprise Edition (with a licence that includes GitLab Duo)"}
		}
	}
	me, err := c.UserSelf(ctx)
	if err != nil {
		if errors.Is(err, ErrUnreachable) {
			return in, Settings{}, err
		}
		return in, Settings{}, &GateError{Gate: "admin", Problem: err.Error(), Fix: "use a personal access token of an instance administrator with the api scope"}
	}
	if !me.IsAdmin {
		return in, Settings{}, &GateError{Gate: "admin", Problem: fmt.Sprintf("%s is not an instance administrator", in.Username),
			Fix: "use a token of an administrator (Admin → Users → Access level: Administrator); with Admin Mode on, the token also needs the admin_mode scope"}
	}
	// aiSelfHostedModels is null (or refused) unless the licence and add-on
	// allow managing self-hosted models (manage_self_hosted_models_settings).
	var ms *gql.SelfHostedModelsResponse
	err = c.call(ctx, false, func(ctx context.Context, g graphql.Client) (err error) {
		ms, err = gql.SelfHostedModels(ctx, g, nil)
		return err
	})
	if err != nil && !isPermission(err) {
		return in, Settings{}, err
	}
	if err != nil || ms.AiSelfHostedModels == nil || pf.DuoSettings == nil {
		fix := "the instance needs a licence with GitLab Duo Self-Hosted and an active GitLab Duo Enterprise add-on (or the Duo Agent Platform Self-Hosted add-on for offline licences): Admin → Subscription and Admin → GitLab Duo; on GitLab.com or with Amazon Q connected it is not available"
		if ti.Known && !slices.Contains(ti.Scopes, "admin_mode") {
			fix += "; if Admin Mode is on (Admin → Settings → General → Sign-in restrictions), the token also needs the admin_mode scope"
		}
		return in, Settings{}, &GateError{Gate: "licence", Problem: "GitLab does not let " + in.Username + " manage self-hosted models on this instance", Fix: fix}
	}
	return in, settingsOf(pf.DuoSettings.AiGatewayUrl, pf.DuoSettings.DuoAgentPlatformServiceUrl, pf.DuoSettings.AiGatewayTimeoutSeconds), nil
}

func settingsOf(gw, dap *string, timeout *int) Settings {
	var s Settings
	if gw != nil {
		s.AIGatewayURL = *gw
	}
	if dap != nil {
		s.AgentPlatformURL = *dap
	}
	if timeout != nil {
		s.TimeoutSeconds = *timeout
	}
	return s
}

// gateOr turns a permission error into a GateError.
func gateOr(err error, gate, problem string) error {
	if isPermission(err) {
		return &GateError{Gate: gate, Problem: problem + " (" + err.Error() + ")",
			Fix: "use a personal access token of an instance administrator with the api scope (and admin_mode if Admin Mode is on)"}
	}
	return err
}

// EnumValues introspects one enum type.
func (c *Client) EnumValues(ctx context.Context, name string) ([]string, error) {
	var r *gql.EnumValuesResponse
	err := c.call(ctx, false, func(ctx context.Context, g graphql.Client) (err error) {
		r, err = gql.EnumValues(ctx, g, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("introspecting %s: %w", name, err)
	}
	if r.Type == nil || len(r.Type.EnumValues) == 0 {
		return nil, fmt.Errorf("GitLab's schema has no enum %s (older than 17.4, or the API changed)", name)
	}
	out := make([]string, 0, len(r.Type.EnumValues))
	for _, v := range r.Type.EnumValues {
		out = append(out, v.Name)
	}
	return out, nil
}

// Read takes a Snapshot: preflight, the enums, the model records (listed,
// plus knownIDs and the features' models, because GitLab hides beta families
// from the list) and the feature settings.
func (c *Client) Read(ctx context.Context, knownIDs []string) (*Snapshot, error) {
	in, st, err := c.Preflight(ctx)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Instance: in, Settings: st, Rows: map[string]FeatureSetting{}, Models: map[string]ModelRecord{}}
	if s.Features, err = c.EnumValues(ctx, "AiFeatures"); err != nil {
		return nil, err
	}
	if s.Families, err = c.EnumValues(ctx, "AiAcceptedSelfHostedModels"); err != nil {
		return nil, err
	}
	providers, err := c.EnumValues(ctx, "AiFeatureProviders")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(providers, "SELF_HOSTED") {
		return nil, fmt.Errorf("GitLab's AiFeatureProviders has no SELF_HOSTED (it has %s): this GitLab version is not supported", strings.Join(providers, ", "))
	}
	rows, err := c.FeatureSettings(ctx)
	if err != nil {
		return nil, err
	}
	ids := slices.Clone(knownIDs)
	for _, r := range rows {
		s.Rows[r.Feature] = r
		if r.ModelID != "" {
			ids = append(ids, r.ModelID)
		}
	}
	for _, f := range s.Features {
		if _, ok := s.Rows[f]; !ok {
			s.Hidden = append(s.Hidden, f)
		}
	}
	listed, err := c.models(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, m := range listed {
		s.Models[m.Name] = m
	}
	sort.Strings(ids)
	for _, id := range slices.Compact(ids) {
		if s.hasID(id) {
			continue
		}
		got, err := c.models(ctx, &id)
		if err != nil && !isPermission(err) {
			return nil, err
		}
		for _, m := range got {
			s.Models[m.Name] = m
		}
	}
	return s, nil
}

func (s *Snapshot) hasID(id string) bool {
	for _, m := range s.Models {
		if m.ID == id {
			return true
		}
	}
	return false
}

// models lists self-hosted model records, or fetches one by id.
func (c *Client) models(ctx context.Context, id *string) ([]ModelRecord, error) {
	var r *gql.SelfHostedModelsResponse
	err := c.call(ctx, false, func(ctx context.Context, g graphql.Client) (err error) {
		r, err = gql.SelfHostedModels(ctx, g, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading self-hosted models: %w", err)
	}
	if r.AiSelfHostedModels == nil {
		return nil, nil
	}
	var out []ModelRecord
	for _, n := range r.AiSelfHostedModels.Nodes {
		if n == nil {
			continue
		}
		m := ModelRecord{ID: n.Id, Name: n.Name, Family: n.Model, Endpoint: n.Endpoint}
		if n.Identifier != nil {
			m.Identifier = *n.Identifier
		}
		out = append(out, m)
	}
	return out, nil
}

// FeatureSettings reads aiFeatureSettings (slow: see DefaultSlowCallTimeout).
func (c *Client) FeatureSettings(ctx context.Context) ([]FeatureSetting, error) {
	var r *gql.FeatureSettingsResponse
	err := c.call(ctx, true, func(ctx context.Context, g graphql.Client) (err error) {
		r, err = gql.FeatureSettings(ctx, g)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading feature settings: %w", err)
	}
	if r.AiFeatureSettings == nil {
		return nil, errors.New("reading feature settings: GitLab returned none (licence or permission)")
	}
	var out []FeatureSetting
	for _, n := range r.AiFeatureSettings.Nodes {
		if n == nil {
			continue
		}
		fs := FeatureSetting{Feature: featureKey(n.Feature), Provider: n.Provider, Title: FeatureTitle(featureKey(n.Feature))}
		if n.Title != nil && *n.Title != "" {
			fs.Title = *n.Title
		}
		if n.SelfHostedModel != nil {
			fs.ModelID, fs.ModelName = n.SelfHostedModel.Id, n.SelfHostedModel.Name
		}
		out = append(out, fs)
	}
	return out, nil
}
