package gitlabtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// adminRoot resolves the Query and Mutation fields of the stand-in.
type adminRoot struct{ a *Admin }

type userKey struct{}

func userOf(ctx context.Context) adminUser { u, _ := ctx.Value(userKey{}).(adminUser); return u }

// modelID is the AiSelfHostedModelID scalar (gid://gitlab/Ai::SelfHostedModel/<n>).
type modelID string

func (modelID) ImplementsGraphQLType(name string) bool { return name == "AiSelfHostedModelID" }

func (m *modelID) UnmarshalGraphQL(input any) error {
	s, ok := input.(string)
	if !ok {
		return errors.New("AiSelfHostedModelID must be a string")
	}
	*m = modelID(s)
	return nil
}

func (m modelID) MarshalJSON() ([]byte, error) { return json.Marshal(string(m)) }

// num returns the database id, 0 for a malformed gid.
func (m modelID) num() int {
	n, err := strconv.Atoi(strings.TrimPrefix(string(m), "gid://gitlab/Ai::SelfHostedModel/"))
	if err != nil || !strings.HasPrefix(string(m), "gid://gitlab/Ai::SelfHostedModel/") {
		return 0
	}
	return n
}

// timeScalar is GitLab's Time scalar (ISO 8601).
type timeScalar struct{ time.Time }

func (timeScalar) ImplementsGraphQLType(name string) bool { return name == "Time" }
func (t *timeScalar) UnmarshalGraphQL(input any) error {
	s, _ := input.(string)
	v, err := time.Parse(time.RFC3339, s)
	t.Time = v
	return err
}
func (t timeScalar) MarshalJSON() ([]byte, error) { return json.Marshal(t.UTC().Format(time.RFC3339)) }

type currentUser struct {
	Username string
}

type metadata struct {
	Version, Revision string
	Enterprise        bool
}

type duoSettings struct {
	AiGatewayUrl               *string
	AiGatewayTimeoutSeconds    *int32
	DuoAgentPlatformServiceUrl *string
	DuoCoreFeaturesEnabled     *bool
	UpdatedAt                  timeScalar
}

type aiModel struct {
	Id              modelID
	Name, Model     string
	Endpoint        string
	Identifier      *string
	HasApiToken     bool
	ReleaseState    *string
	CreatedAt       timeScalar
	UpdatedAt       *timeScalar
	FeatureSettings *featureConn
}

type modelConn struct{ Nodes *[]*aiModel }

type featureSetting struct {
	Feature, Provider string
	Title             *string
	MainFeature       *string
	CompatibleLlms    *[]string
	ReleaseState      *string
	SelfHostedModel   *aiModel
}

type featureConn struct{ Nodes *[]*featureSetting }

type probeResult struct {
	Name    *string
	Success *bool
	Message *string
}

type connectorStatus struct {
	Success      *bool
	ProbeResults *[]probeResult
}

func ptr[T any](v T) *T { return &v }

// abilities of the caller (ee/app/policies/ee/global_policy.rb).
func (a *Admin) canManage(u adminUser) bool   { return u.admin && a.licence.SelfHostedModels }
func (a *Admin) canPlatform(u adminUser) bool { return u.admin && a.licence.AgentPlatform }

func (r *adminRoot) CurrentUser(ctx context.Context) *currentUser {
	u := userOf(ctx)
	return &currentUser{Username: u.username}
}

func (r *adminRoot) Metadata() *metadata {
	return &metadata{Version: r.a.o.Version, Revision: "0000000", Enterprise: true}
}

func (r *adminRoot) DuoSettings(ctx context.Context) *duoSettings {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.settingsView(userOf(ctx))
}

// settingsView hides the fields the caller may not read (null, as GitLab's
// field authorization does).
func (a *Admin) settingsView(u adminUser) *duoSettings {
	s := &duoSettings{UpdatedAt: timeScalar{time.Now()}, DuoCoreFeaturesEnabled: ptr(true)}
	if !a.canManage(u) {
		return s
	}
	if a.gatewayURL != "" {
		s.AiGatewayUrl = ptr(a.gatewayURL)
	}
	if a.dapURL != "" {
		s.DuoAgentPlatformServiceUrl = ptr(a.dapURL)
	}
	s.AiGatewayTimeoutSeconds = ptr(int32(a.timeout))
	return s
}

func (r *adminRoot) AiSelfHostedModels(ctx context.Context, args struct{ ID *modelID }) (*modelConn, error) {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.canManage(userOf(ctx)) {
		return nil, errPermission
	}
	var nodes []*aiModel
	for id := 1; id < a.nextID; id++ {
		m := a.models[id]
		if m == nil {
			continue
		}
		if args.ID != nil {
			if args.ID.num() == id {
				nodes = append(nodes, a.modelView(m))
			}
			continue
		}
		// Without an id GitLab lists only GA families until the beta
		// terms are accepted.
		if !a.beta && slices.Contains(betaFamilies, m.Family) {
			continue
		}
		nodes = append(nodes, a.modelView(m))
	}
	return &modelConn{Nodes: &nodes}, nil
}

func (a *Admin) modelView(m *AdminModel) *aiModel {
	state := "GA"
	if slices.Contains(betaFamilies, m.Family) {
		state = "BETA"
	}
	v := &aiModel{Id: modelID(m.GID()), Name: m.Name, Model: m.Family, Endpoint: m.Endpoint, Identifier: ptr(m.Identifier),
		HasApiToken: m.APIToken != "", ReleaseState: ptr(state), CreatedAt: timeScalar{time.Now()}}
	return v
}

func (r *adminRoot) AiFeatureSettings(ctx context.Context, args struct{ SelfHostedModelId *modelID }) (*featureConn, error) {
	a := r.a
	a.definitionsDelay(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	u := userOf(ctx)
	if !a.canManage(u) {
		return nil, errPermission
	}
	var nodes []*featureSetting
	for _, f := range a.features {
		info := featureInfo(f)
		if info.flagged && !a.beta {
			continue // allowed_features: beta features only after the terms
		}
		if isPlatform(f) && !a.canPlatform(u) {
			continue // read_dap_self_hosted_model
		}
		fs := a.featureView(f)
		if args.SelfHostedModelId != nil && (fs.SelfHostedModel == nil || fs.SelfHostedModel.Id != *args.SelfHostedModelId) {
			continue
		}
		nodes = append(nodes, fs)
	}
	return &featureConn{Nodes: &nodes}, nil
}

// definitionsDelay is FetchModelDefinitionsService's call to the cloud.
func (a *Admin) definitionsDelay(ctx context.Context) {
	if a.o.DefinitionsDelay <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(a.o.DefinitionsDelay):
	}
}

func (a *Admin) featureView(f string) *featureSetting {
	info := featureInfo(f)
	fs := &featureSetting{Feature: strings.ToLower(f), Provider: "unassigned", Title: ptr(info.title), CompatibleLlms: ptr(slices.Clone(info.families))}
	if row := a.rows[f]; row != nil {
		fs.Provider = row.provider
		if m := a.models[row.modelID]; m != nil && row.provider == "self_hosted" {
			fs.SelfHostedModel = a.modelView(m)
		}
	}
	return fs
}

func (r *adminRoot) CloudConnectorStatus(ctx context.Context) (*connectorStatus, error) {
	a := r.a
	a.mu.Lock()
	u := userOf(ctx)
	gw, dap := a.gatewayURL, a.dapURL
	vendored := false
	for _, row := range a.rows {
		vendored = vendored || row.provider == "vendored"
	}
	a.mu.Unlock()
	if !u.admin {
		return nil, errPermission
	}
	var probes []probeResult
	add := func(name string, err error, okMsg string) {
		p := probeResult{Name: ptr(name), Success: ptr(err == nil), Message: ptr(okMsg)}
		if err != nil {
			p.Message = ptr(err.Error())
		}
		probes = append(probes, p)
	}
	if gw == "" {
		// The default (cloud) probe set.
		for _, n := range []string{"license_probe", "host_probe", "host_probe", "access_probe", "token_probe", "end_to_end_probe"} {
			add(n, nil, "ok")
		}
	} else {
		add("ai_gateway_url_presence_probe", nil, "The AI Gateway URL is set")
		var hostErr error
		if a.o.ProbeHost != nil {
			hostErr = a.o.ProbeHost(ctx, gw)
		}
		add("host_probe", hostErr, gw+" is reachable")
		add("code_suggestions_license_probe", nil, "The license includes Code Suggestions")
		if dap != "" {
			var err error
			if strings.Contains(dap, "://") {
				err = fmt.Errorf("failed to connect to the Duo Agent Platform service at %s: name resolution failed", dap)
			}
			add("duo_agent_platform_probe", err, "The Duo Agent Platform service answered ListTools")
		}
		if vendored {
			for _, n := range []string{"license_probe", "host_probe", "host_probe", "access_probe", "token_probe"} {
				add(n, nil, "ok")
			}
		}
	}
	ok := true
	for _, p := range probes {
		ok = ok && *p.Success
	}
	return &connectorStatus{Success: ptr(ok), ProbeResults: &probes}, nil
}

// checkGatewayURL is GitLab's validation of ai_gateway_url (Ai::Setting,
// Gitlab::HTTP_V2::UrlBlocker); "" is fine (unset).
func (a *Admin) checkGatewayURL(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 2048 {
		return "Ai gateway url is too long (maximum is 2048 characters)"
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "Ai gateway url is blocked: URI is invalid"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "Ai gateway url is blocked: Only allowed schemes are http, https"
	}
	host := u.Hostname()
	if slices.Contains(a.o.Allowlist, host) {
		return ""
	}
	ip := net.ParseIP(host)
	if strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback()) {
		if a.o.AllowLocalhost {
			return ""
		}
		return "Ai gateway url is blocked: Requests to localhost are not allowed"
	}
	if ip != nil && (ip.IsPrivate() || ip.IsLinkLocalUnicast()) {
		return "Ai gateway url is blocked: Requests to the local network are not allowed"
	}
	return ""
}

func contextWithUser(r *http.Request, u adminUser) context.Context {
	return context.WithValue(r.Context(), userKey{}, u)
}

// gitlabError is an error text GitLab answers verbatim (capitalised, with
// punctuation), returned as a top-level GraphQL error.
type gitlabError string

func (e gitlabError) Error() string { return string(e) }

// errPermission is GitLab's answer to anything the caller may not see or do.
var errPermission = gitlabError(PermissionError)
