package gitlabtest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

type duoSettingsPayload struct {
	ClientMutationId *string
	DuoSettings      *duoSettings
	Errors           []string
}

type modelPayload struct {
	ClientMutationId *string
	SelfHostedModel  *aiModel
	Errors           []string
}

type checkPayload struct {
	ClientMutationId *string
	Result           *probeResult
	Errors           []string
}

type featurePayload struct {
	ClientMutationId  *string
	AiFeatureSettings []*featureSetting
	Errors            []string
}

// mutating counts a mutation and checks the token's api scope (queries
// need read_api, mutations api).
func (a *Admin) mutating(ctx context.Context) (adminUser, error) {
	u := userOf(ctx)
	a.mutations++
	if !slices.Contains(u.scopes, "api") {
		return u, errPermission
	}
	return u, nil
}

func (r *adminRoot) DuoSettingsUpdate(ctx context.Context, args struct {
	Input struct {
		ClientMutationId           *string
		AiGatewayUrl               *string
		AiGatewayTimeoutSeconds    *int32
		DuoAgentPlatformServiceUrl *string
		DuoCoreFeaturesEnabled     *bool
	}
}) (*duoSettingsPayload, error) {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	u, err := a.mutating(ctx)
	if err != nil {
		return nil, err
	}
	in := args.Input
	if !a.canManage(u) {
		for name, set := range map[string]bool{"ai_gateway_url": in.AiGatewayUrl != nil, "ai_gateway_timeout_seconds": in.AiGatewayTimeoutSeconds != nil, "duo_agent_platform_service_url": in.DuoAgentPlatformServiceUrl != nil} {
			if set {
				return nil, gitlabError(fmt.Sprintf("You don't have permission to update the setting %s.", name))
			}
		}
	}
	gw, dap, timeout := a.gatewayURL, a.dapURL, a.timeout
	var errs []string
	if in.AiGatewayUrl != nil {
		gw = strings.TrimRight(strings.TrimSpace(*in.AiGatewayUrl), "/")
		if msg := a.checkGatewayURL(gw); msg != "" {
			errs = append(errs, msg)
		}
	}
	if in.DuoAgentPlatformServiceUrl != nil {
		// host:port by the docs, but GitLab only checks the length.
		dap = strings.TrimRight(strings.TrimSpace(*in.DuoAgentPlatformServiceUrl), "/")
		if len(dap) > 2048 {
			errs = append(errs, "Duo agent platform service url is too long (maximum is 2048 characters)")
		}
	}
	if in.AiGatewayTimeoutSeconds != nil {
		timeout = int(*in.AiGatewayTimeoutSeconds)
		if timeout < 60 || timeout > 600 {
			errs = append(errs, "Ai gateway timeout seconds must be between 60 and 600 seconds")
		}
	}
	if len(errs) == 0 {
		a.gatewayURL, a.dapURL, a.timeout = gw, dap, timeout
	} else {
		errs = slices.Compact(errs)
	}
	return &duoSettingsPayload{ClientMutationId: in.ClientMutationId, DuoSettings: a.settingsView(u), Errors: nonNil(errs)}, nil
}

type modelInput struct {
	ClientMutationId *string
	Name             string
	Model            string
	Endpoint         string
	ApiToken         *string
	Identifier       *string
}

// validateModel is Ai::SelfHostedModel's validation; self is the record
// being updated (0 for a new one).
func (a *Admin) validateModel(in modelInput, self int) []string {
	var errs []string
	if strings.TrimSpace(in.Name) == "" {
		errs = append(errs, "Name can't be blank")
	}
	for id, m := range a.models {
		if id != self && m.Name == in.Name {
			errs = append(errs, "Name has already been taken")
		}
	}
	if u, err := url.Parse(in.Endpoint); in.Endpoint == "" {
		errs = append(errs, "Endpoint can't be blank")
	} else if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		errs = append(errs, "Endpoint is blocked: Only allowed schemes are http, https")
	}
	if in.Identifier != nil && len(*in.Identifier) > 255 {
		errs = append(errs, "Identifier is too long (maximum is 255 characters)")
	}
	return errs
}

func (a *Admin) store(m *AdminModel, in modelInput) {
	m.Name, m.Family, m.Endpoint, m.Identifier = in.Name, strings.ToLower(in.Model), in.Endpoint, ""
	if in.Identifier != nil {
		m.Identifier = *in.Identifier
	}
	if in.ApiToken != nil {
		m.APIToken = *in.ApiToken
	}
}

func (r *adminRoot) AiSelfHostedModelCreate(ctx context.Context, args struct{ Input modelInput }) (*modelPayload, error) {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	u, err := a.mutating(ctx)
	if err != nil {
		return nil, err
	}
	if !a.canManage(u) {
		return nil, errPermission
	}
	if errs := a.validateModel(args.Input, 0); len(errs) > 0 {
		return &modelPayload{ClientMutationId: args.Input.ClientMutationId, Errors: errs}, nil
	}
	m := &AdminModel{ID: a.nextID}
	a.nextID++
	a.store(m, args.Input)
	a.models[m.ID] = m
	return &modelPayload{ClientMutationId: args.Input.ClientMutationId, SelfHostedModel: a.modelView(m), Errors: []string{}}, nil
}

func (r *adminRoot) AiSelfHostedModelUpdate(ctx context.Context, args struct {
	Input struct {
		modelInput
		Id modelID
	}
}) (*modelPayload, error) {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	u, err := a.mutating(ctx)
	if err != nil {
		return nil, err
	}
	m := a.models[args.Input.Id.num()]
	if !a.canManage(u) || m == nil {
		return nil, errPermission
	}
	if errs := a.validateModel(args.Input.modelInput, m.ID); len(errs) > 0 {
		return &modelPayload{ClientMutationId: args.Input.ClientMutationId, SelfHostedModel: a.modelView(m), Errors: errs}, nil
	}
	a.store(m, args.Input.modelInput)
	return &modelPayload{ClientMutationId: args.Input.ClientMutationId, SelfHostedModel: a.modelView(m), Errors: []string{}}, nil
}

func (r *adminRoot) AiSelfHostedModelDelete(ctx context.Context, args struct {
	Input struct {
		ClientMutationId *string
		Id               modelID
	}
}) (*modelPayload, error) {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	u, err := a.mutating(ctx)
	if err != nil {
		return nil, err
	}
	m := a.models[args.Input.Id.num()]
	if !a.canManage(u) || m == nil {
		return nil, errPermission
	}
	view := a.modelView(m)
	a.deleteModel(m.ID) // ON DELETE CASCADE: its features lose their rows
	return &modelPayload{ClientMutationId: args.Input.ClientMutationId, SelfHostedModel: view, Errors: []string{}}, nil
}

func (r *adminRoot) AiSelfHostedModelConnectionCheck(ctx context.Context, args struct{ Input modelInput }) (*checkPayload, error) {
	a := r.a
	a.mu.Lock()
	u, err := a.mutating(ctx)
	gw := a.gatewayURL
	can := a.canManage(u)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !can {
		return nil, errPermission
	}
	in := args.Input
	m := AdminModel{Name: in.Name, Family: strings.ToLower(in.Model), Endpoint: in.Endpoint}
	if in.Identifier != nil {
		m.Identifier = *in.Identifier
	}
	res := &probeResult{Name: ptr("self_hosted_model_configuration_probe")}
	msg := ""
	switch {
	case gw == "":
		msg = "No local AI Gateway URL configured"
	case a.o.CheckModel != nil:
		msg = a.o.CheckModel(ctx, gw, m)
	}
	if msg == "" {
		res.Success, res.Message = ptr(true), ptr(SuccessMessage)
	} else {
		res.Success, res.Message = ptr(false), ptr("ERROR: "+msg)
	}
	return &checkPayload{ClientMutationId: in.ClientMutationId, Result: res, Errors: []string{}}, nil
}

func (r *adminRoot) AiFeatureSettingUpdate(ctx context.Context, args struct {
	Input struct {
		ClientMutationId    *string
		Features            []string
		Provider            string
		AiSelfHostedModelId *modelID
		OfferedModelRef     *string
	}
}) (*featurePayload, error) {
	a := r.a
	a.definitionsDelay(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	u, err := a.mutating(ctx)
	if err != nil {
		return nil, err
	}
	in := args.Input
	out := &featurePayload{ClientMutationId: in.ClientMutationId, AiFeatureSettings: []*featureSetting{}, Errors: []string{}}
	if len(in.Features) == 0 {
		out.Errors = append(out.Errors, "At least one feature is required")
		return out, nil
	}
	// A model id with Agent Platform features needs update_dap_self_hosted_model,
	// with classic ones manage_self_hosted_models_settings: a mixed batch needs both.
	if in.AiSelfHostedModelId != nil {
		for _, f := range in.Features {
			if (isPlatform(f) && !a.canPlatform(u)) || (!isPlatform(f) && !a.canManage(u)) {
				return nil, gitlabError("You don't have permission to update the setting ai_self_hosted_model_id.")
			}
		}
	}
	if !u.admin {
		return nil, errPermission
	}
	var model *AdminModel
	if in.AiSelfHostedModelId != nil {
		if model = a.models[in.AiSelfHostedModelId.num()]; model == nil {
			return nil, errPermission
		}
	}
	for _, f := range in.Features {
		info := featureInfo(f)
		row := &featureRow{provider: strings.ToLower(in.Provider)}
		switch in.Provider {
		case "SELF_HOSTED":
			if model == nil {
				out.Errors = append(out.Errors, "Self hosted model can't be blank")
				continue
			}
			if !slices.Contains(info.families, model.Family) {
				out.Errors = append(out.Errors, fmt.Sprintf("%s is incompatible with the %s feature", familyNames[model.Family], info.title))
				continue
			}
			row.modelID = model.ID
		case "VENDORED", "DISABLED", "UNASSIGNED":
		default:
			out.Errors = append(out.Errors, "Provider is not included in the list")
			continue
		}
		a.rows[f] = row
		out.AiFeatureSettings = append(out.AiFeatureSettings, a.featureView(f))
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
