package gitlabtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	graphql "github.com/graph-gophers/graphql-go"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
)

// AdminPath is where GitLab serves GraphQL; TokenSelfPath the REST call
// that describes the caller's personal access token.
const (
	AdminPath     = "/api/graphql"
	TokenSelfPath = "/api/v4/personal_access_tokens/self"
	UserPath      = "/api/v4/user"
)

// DefaultAdminVersion is the GitLab version the admin API stand-in claims;
// its semantics are those of GitLab EE 18.8–18.9 (gitlab-admin-api.md).
const DefaultAdminVersion = "18.9.0-ee"

// Permission texts GitLab answers with (ee/app/policies, graphql mutations).
const (
	PermissionError = "The resource that you are attempting to access does not exist or you don't have permission to perform this action"
	SuccessMessage  = "Successfully connected to the self-hosted model"
)

// AdminOptions configures the admin API stand-in.
type AdminOptions struct {
	// Version is metadata.version; DefaultAdminVersion if empty.
	Version string
	// AllowLocalhost accepts a loopback aiGatewayUrl, as GitLab does in
	// development mode (the demo runs everything on loopback). Production
	// GitLab refuses it.
	AllowLocalhost bool
	// Allowlist holds the hosts of the outbound-requests allowlist (Admin →
	// Settings → Network): private addresses are blocked unless listed.
	Allowlist []string
	// CheckModel runs the model-configuration probe of a connection check
	// (Rails → POST {aiGatewayUrl}/v1/prompts/model_configuration%2Fcheck);
	// nil succeeds whenever an AI gateway URL is set. It returns "" on
	// success or the gateway's error text.
	CheckModel func(ctx context.Context, gatewayURL string, m AdminModel) string
	// ProbeHost is cloudConnectorStatus's host_probe (HEAD on the gateway
	// URL); nil succeeds.
	ProbeHost func(ctx context.Context, gatewayURL string) error
	// DefinitionsDelay is how long every aiFeatureSettings query and
	// aiFeatureSettingUpdate waits first, as GitLab does fetching model
	// definitions from its cloud gateway (5 s on air-gapped instances).
	DefinitionsDelay time.Duration
}

// Licence says which licensed abilities the instance has.
type Licence struct {
	// SelfHostedModels: the self_hosted_models licence feature with an
	// active Duo Enterprise add-on (manage_self_hosted_models_settings).
	SelfHostedModels bool
	// AgentPlatform: dap_self_hosted? (update/read_dap_self_hosted_model).
	AgentPlatform bool
}

// AdminModel is a self-hosted model record in the stand-in.
type AdminModel struct {
	ID                                 int
	Name, Family, Endpoint, Identifier string
	APIToken                           string
}

// GID is the record's global id.
func (m AdminModel) GID() string { return fmt.Sprintf("gid://gitlab/Ai::SelfHostedModel/%d", m.ID) }

type adminUser struct {
	username string
	admin    bool
	scopes   []string
}

type featureRow struct {
	provider string
	modelID  int
}

// Admin is a stand-in for GitLab's Duo Self-Hosted admin API (GraphQL, plus
// the personal-access-token self endpoint) with GitLab's semantics from
// gitlab-admin-api.md: admin and licence gates with GitLab's error texts,
// the aiGatewayUrl rules, unique model names, beta families hidden from
// id-less listings, per-feature family compatibility, a separate ability for
// Agent Platform features, cascade on model delete, and new enum values
// after Upgrade. It is NOT GitLab.
type Admin struct {
	o AdminOptions

	mu         sync.Mutex
	schema     *graphql.Schema
	features   []string // AiFeatures values, in enum order
	tokens     map[string]adminUser
	licence    Licence
	beta       bool
	gatewayURL string
	dapURL     string
	timeout    int
	models     map[int]*AdminModel
	nextID     int
	rows       map[string]*featureRow
	down       bool
	failAfter  int // >0: mutations left before the API goes down
	mutations  int
}

// NewAdmin returns a fresh instance: licensed for self-hosted models and the
// Agent Platform, beta terms not accepted, no settings, no models.
func NewAdmin(o AdminOptions) (*Admin, error) {
	if o.Version == "" {
		o.Version = DefaultAdminVersion
	}
	a := &Admin{o: o, tokens: map[string]adminUser{}, licence: Licence{SelfHostedModels: true, AgentPlatform: true},
		timeout: 60, models: map[int]*AdminModel{}, nextID: 1, rows: map[string]*featureRow{}}
	for _, f := range baseFeatures {
		a.features = append(a.features, f.value)
	}
	if err := a.rebuild(); err != nil {
		return nil, err
	}
	return a, nil
}

// rebuild parses the schema with the current AiFeatures values.
func (a *Admin) rebuild() error {
	src := gitlabconnect.Schema
	start := strings.Index(src, "enum AiFeatures {")
	end := start + strings.Index(src[start:], "}")
	src = src[:start] + "enum AiFeatures {\n  " + strings.Join(a.features, "\n  ") + "\n" + src[end:]
	s, err := graphql.ParseSchema(src, &adminRoot{a: a}, graphql.UseFieldResolvers(), graphql.MaxDepth(12))
	if err != nil {
		return fmt.Errorf("admin stand-in schema: %w", err)
	}
	a.schema = s
	return nil
}

// AddToken lets token act as username with the given scopes (api,
// read_api, admin_mode, …).
func (a *Admin) AddToken(token, username string, admin bool, scopes ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[token] = adminUser{username: username, admin: admin, scopes: slices.Clone(scopes)}
}

// SetLicence changes the instance's licensed abilities.
func (a *Admin) SetLicence(l Licence) { a.mu.Lock(); a.licence = l; a.mu.Unlock() }

// AcceptBetaTerms sets the "Use beta models and features" toggle.
func (a *Admin) AcceptBetaTerms(on bool) { a.mu.Lock(); a.beta = on; a.mu.Unlock() }

// SetDown makes the admin API answer 503 (GitLab unreachable or restarting).
func (a *Admin) SetDown(down bool) { a.mu.Lock(); a.down = down; a.failAfter = 0; a.mu.Unlock() }

// FailAfterMutations lets n more mutations through, then goes down (GitLab
// failing in the middle of an apply).
func (a *Admin) FailAfterMutations(n int) { a.mu.Lock(); a.failAfter = n; a.mu.Unlock() }

// Mutations is how many mutations changed or tried to change something.
func (a *Admin) Mutations() int { a.mu.Lock(); defer a.mu.Unlock(); return a.mutations }

// Upgrade adds AiFeatures values, as a newer GitLab does; they arrive
// unassigned.
func (a *Admin) Upgrade(features ...string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range features {
		if !slices.Contains(a.features, f) {
			a.features = append(a.features, f)
		}
	}
	return a.rebuild()
}

// SetFeature sets a feature's row as an admin would in GitLab's UI:
// provider is self_hosted, vendored, disabled or unassigned; modelID only
// for self_hosted.
func (a *Admin) SetFeature(feature, provider string, modelID int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rows[feature] = &featureRow{provider: provider, modelID: modelID}
}

// DeleteModel deletes a record as an admin would; feature rows using it are
// deleted with it (ON DELETE CASCADE), so those features become unassigned.
func (a *Admin) DeleteModel(id int) { a.mu.Lock(); a.deleteModel(id); a.mu.Unlock() }

func (a *Admin) deleteModel(id int) {
	delete(a.models, id)
	for f, r := range a.rows {
		if r.modelID == id {
			delete(a.rows, f)
		}
	}
}

// Feature returns a feature's provider and the name of its model.
func (a *Admin) Feature(feature string) (provider, model string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rows[feature]
	if r == nil {
		return "unassigned", ""
	}
	if m := a.models[r.modelID]; m != nil {
		model = m.Name
	}
	return r.provider, model
}

// Models returns the records, in id order.
func (a *Admin) Models() []AdminModel {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AdminModel
	for id := 1; id < a.nextID; id++ {
		if m := a.models[id]; m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// Settings returns aiGatewayUrl, duoAgentPlatformServiceUrl and the timeout.
func (a *Admin) Settings() (gatewayURL, agentPlatformURL string, timeout int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gatewayURL, a.dapURL, a.timeout
}
