package gitlabconnect

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/Khan/genqlient/graphql"

	gql "github.com/duo-confidential/duo-confidential/gateway/gitlabconnect/internal/gitlabgql"
)

// Outcome of one planned change.
const (
	OutcomeDone         = "done"
	OutcomeFailed       = "failed"
	OutcomeNotAttempted = "not attempted"
)

// ChangeResult is what happened to one planned change.
type ChangeResult struct {
	Change
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// Result is what Apply did. Err is set when it stopped early (GitLab went
// away): then the changes after the failing one are NotAttempted, and
// running Apply again (with a fresh Plan) completes the job.
type Result struct {
	Changes []ChangeResult `json:"changes"`
	// ModelIDs are the ids of the appliance's model records (name → GitLab
	// global id); keep them, GitLab hides beta-family records from lists.
	ModelIDs map[string]string `json:"model_ids"`
	Err      error             `json:"-"`
}

// Count returns how many changes had the outcome.
func (r *Result) Count(outcome string) int {
	n := 0
	for _, c := range r.Changes {
		if c.Outcome == outcome {
			n++
		}
	}
	return n
}

// Failed reports whether any change did not happen.
func (r *Result) Failed() bool { return r.Err != nil || r.Count(OutcomeDone) != len(r.Changes) }

// Apply makes p's changes: settings, then model records, then the classic
// features per model, then the Agent Platform features per model in their
// own call (GitLab checks another ability for them). GitLab's refusals are
// recorded per change and the rest goes on; when GitLab does not answer,
// Apply stops and reports the rest as not attempted.
func (c *Client) Apply(ctx context.Context, p *Plan, t Target) *Result {
	r := &Result{ModelIDs: map[string]string{}}
	for _, m := range p.Snapshot.Models {
		r.ModelIDs[m.Name] = m.ID
	}
	for _, ch := range p.Changes {
		r.Changes = append(r.Changes, ChangeResult{Change: ch, Outcome: OutcomeNotAttempted})
	}
	steps := []func(context.Context, *Result, Target) error{c.applySettings, c.applyModels, c.applyAssign(ChangeAssign), c.applyAssign(ChangeAssignPlatform)}
	for _, step := range steps {
		if err := step(ctx, r, t); err != nil {
			r.Err = err
			return r
		}
	}
	return r
}

// pending returns the indexes of not-yet-attempted changes of kind.
func (r *Result) pending(kind string) []int {
	var out []int
	for i, c := range r.Changes {
		if c.Kind == kind && c.Outcome == OutcomeNotAttempted {
			out = append(out, i)
		}
	}
	return out
}

func (r *Result) mark(i int, err error) {
	if err == nil {
		r.Changes[i].Outcome = OutcomeDone
		return
	}
	r.Changes[i].Outcome, r.Changes[i].Error = OutcomeFailed, err.Error()
}

// fatal reports whether err means GitLab did not answer.
func fatal(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (c *Client) applySettings(ctx context.Context, r *Result, t Target) error {
	idx := r.pending(ChangeSetting)
	if len(idx) == 0 {
		return nil
	}
	var gw, dap *string
	var timeout *int
	for _, i := range idx {
		v := r.Changes[i].To
		switch r.Changes[i].Target {
		case "aiGatewayUrl":
			gw = &v
		case "duoAgentPlatformServiceUrl":
			dap = &v
		case "aiGatewayTimeoutSeconds":
			n, _ := strconv.Atoi(v)
			timeout = &n
		}
	}
	var resp *gql.UpdateDuoSettingsResponse
	err := c.call(ctx, false, func(ctx context.Context, g graphql.Client) (err error) {
		resp, err = gql.UpdateDuoSettings(ctx, g, gw, timeout, dap)
		return err
	})
	if err == nil && (resp.DuoSettingsUpdate == nil) {
		err = errors.New("GitLab returned no result")
	}
	if err == nil && len(resp.DuoSettingsUpdate.Errors) > 0 {
		err = errors.New(strings.Join(resp.DuoSettingsUpdate.Errors, "; "))
	}
	for _, i := range idx {
		r.mark(i, gateOr(err, "settings", "GitLab refused to change the AI settings"))
	}
	if fatal(err) {
		return err
	}
	return nil
}

func (c *Client) applyModels(ctx context.Context, r *Result, t Target) error {
	for _, kind := range []string{ChangeCreateModel, ChangeUpdateModel} {
		for _, i := range r.pending(kind) {
			var m Model
			for _, tm := range t.Models {
				if tm.Name == r.Changes[i].Target {
					m = tm
				}
			}
			id, err := c.saveModel(ctx, m, kind, r.ModelIDs[m.Name])
			r.mark(i, err)
			if err == nil {
				r.ModelIDs[m.Name] = id
			}
			if fatal(err) {
				return err
			}
		}
	}
	return nil
}

// saveModel creates or updates one record and returns its id.
func (c *Client) saveModel(ctx context.Context, m Model, kind, id string) (string, error) {
	family := gql.AiAcceptedSelfHostedModels(m.family())
	key := PlaceholderAPIKey
	ident := m.Identifier
	var (
		errs []string
		got  string
	)
	err := c.call(ctx, false, func(ctx context.Context, g graphql.Client) error {
		if kind == ChangeCreateModel {
			resp, err := gql.CreateModel(ctx, g, m.Name, family, m.Endpoint, &key, &ident)
			if err == nil && resp.AiSelfHostedModelCreate != nil {
				errs = resp.AiSelfHostedModelCreate.Errors
				if sm := resp.AiSelfHostedModelCreate.SelfHostedModel; sm != nil {
					got = sm.Id
				}
			}
			return err
		}
		resp, err := gql.UpdateModel(ctx, g, id, m.Name, family, m.Endpoint, &key, &ident)
		if err == nil && resp.AiSelfHostedModelUpdate != nil {
			errs = resp.AiSelfHostedModelUpdate.Errors
			if sm := resp.AiSelfHostedModelUpdate.SelfHostedModel; sm != nil {
				got = sm.Id
			}
		}
		return err
	})
	if err != nil {
		return "", gateOr(err, "models", "GitLab refused to save the model record")
	}
	if len(errs) > 0 {
		msg := strings.Join(errs, "; ")
		if kind == ChangeCreateModel && strings.Contains(msg, "has already been taken") {
			msg += fmt.Sprintf(" — a record named %s exists but GitLab does not list it: its family is a beta one and the self-hosted beta terms are not accepted. Accept them (Admin → GitLab Duo → Self-hosted models) or rename that record, then run connect again", m.Name)
		}
		return "", errors.New(msg)
	}
	if got == "" {
		return "", errors.New("GitLab returned no model record")
	}
	return got, nil
}

// applyAssign assigns the pending features of kind, one call per model.
func (c *Client) applyAssign(kind string) func(context.Context, *Result, Target) error {
	return func(ctx context.Context, r *Result, t Target) error {
		byModel := map[string][]int{}
		var order []string
		for _, i := range r.pending(kind) {
			m := r.Changes[i].Model
			if byModel[m] == nil {
				order = append(order, m)
			}
			byModel[m] = append(byModel[m], i)
		}
		for _, m := range order {
			idx := byModel[m]
			id := r.ModelIDs[m]
			if id == "" {
				for _, i := range idx {
					r.mark(i, fmt.Errorf("model record %s does not exist (its creation failed)", m))
				}
				continue
			}
			if err := c.assign(ctx, r, idx, id); fatal(err) {
				return err
			}
		}
		return nil
	}
}

// assign sends one aiFeatureSettingUpdate and attributes GitLab's errors to
// the features they name.
func (c *Client) assign(ctx context.Context, r *Result, idx []int, modelID string) error {
	features := make([]gql.AiFeatures, 0, len(idx))
	for _, i := range idx {
		features = append(features, gql.AiFeatures(r.Changes[i].Target))
	}
	var resp *gql.AssignSelfHostedResponse
	err := c.call(ctx, true, func(ctx context.Context, g graphql.Client) (err error) {
		resp, err = gql.AssignSelfHosted(ctx, g, features, modelID)
		return err
	})
	if err == nil && resp.AiFeatureSettingUpdate == nil {
		err = errors.New("GitLab returned no result")
	}
	if err != nil {
		err = gateOr(err, "features", "GitLab refused to assign the features")
		for _, i := range idx {
			r.mark(i, err)
		}
		return err
	}
	done := map[string]bool{}
	for _, s := range resp.AiFeatureSettingUpdate.AiFeatureSettings {
		if s.Provider == ProviderSelfHosted && s.SelfHostedModel != nil && s.SelfHostedModel.Id == modelID {
			done[featureKey(s.Feature)] = true
		}
	}
	errs := resp.AiFeatureSettingUpdate.Errors
	for _, i := range idx {
		f := r.Changes[i].Target
		if done[f] {
			r.mark(i, nil)
			continue
		}
		r.mark(i, errors.New(errorsFor(errs, f, r.Changes[i].Title)))
	}
	return nil
}

// errorsFor picks GitLab's errors that name the feature (by title or enum
// value); if none does, all of them.
func errorsFor(errs []string, feature, title string) string {
	var mine []string
	for _, e := range errs {
		if (title != "" && strings.Contains(e, title)) || strings.Contains(e, feature) || strings.Contains(e, strings.ToLower(feature)) {
			mine = append(mine, e)
		}
	}
	if len(mine) == 0 {
		mine = errs
	}
	if len(mine) == 0 {
		return "GitLab did not assign it and gave no reason"
	}
	return strings.Join(mine, "; ")
}
