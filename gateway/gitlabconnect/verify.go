package gitlabconnect

import (
	"context"
	"fmt"
	"strings"

	"github.com/Khan/genqlient/graphql"

	gql "github.com/duo-confidential/duo-confidential/gateway/gitlabconnect/internal/gitlabgql"
)

// Check is one verification result.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Verification is what verify found: GitLab's own checks and the drift
// rules applied to a fresh read.
type Verification struct {
	Checks []Check  `json:"checks"`
	Drift  *Report  `json:"drift"`
	Probes []string `json:"probes"`
}

// OK reports whether every check passed and nothing drifted.
func (v *Verification) OK() bool {
	for _, c := range v.Checks {
		if !c.OK {
			return false
		}
	}
	return v.Drift != nil && v.Drift.OK()
}

// Verify runs GitLab's connection check for every appliance model (Rails →
// the appliance's gateway → model, 3 s), reads cloudConnectorStatus (which
// must pass and contain no cloud probe) and evaluates the feature settings.
func (c *Client) Verify(ctx context.Context, t Target, knownIDs, managed []string) (*Verification, error) {
	s, err := c.Read(ctx, knownIDs)
	if err != nil {
		return nil, err
	}
	v := &Verification{}
	for _, m := range t.Models {
		v.Checks = append(v.Checks, c.checkModel(ctx, m))
	}
	st, probes, err := c.ConnectorStatus(ctx)
	if err != nil {
		v.Checks = append(v.Checks, Check{Name: "cloudConnectorStatus", Detail: err.Error()})
	} else {
		v.Checks = append(v.Checks, st)
		v.Probes = probes
	}
	v.Drift = Evaluate(s, t, managed, probes)
	return v, nil
}

// checkModel runs aiSelfHostedModelConnectionCheck with m's attributes.
func (c *Client) checkModel(ctx context.Context, m Model) Check {
	ch := Check{Name: "connection check " + m.Name}
	key, ident := PlaceholderAPIKey, m.Identifier
	var resp *gql.CheckModelResponse
	err := c.call(ctx, true, func(ctx context.Context, g graphql.Client) (err error) {
		resp, err = gql.CheckModel(ctx, g, m.Name, gql.AiAcceptedSelfHostedModels(m.family()), m.Endpoint, &key, &ident)
		return err
	})
	switch {
	case err != nil:
		ch.Detail = err.Error()
	case resp.AiSelfHostedModelConnectionCheck == nil:
		ch.Detail = "GitLab returned no result"
	case len(resp.AiSelfHostedModelConnectionCheck.Errors) > 0:
		ch.Detail = strings.Join(resp.AiSelfHostedModelConnectionCheck.Errors, "; ")
	case resp.AiSelfHostedModelConnectionCheck.Result == nil:
		ch.Detail = "GitLab returned no probe result"
	default:
		res := resp.AiSelfHostedModelConnectionCheck.Result
		ch.OK = res.Success != nil && *res.Success
		if res.Message != nil {
			ch.Detail = *res.Message
		}
	}
	return ch
}

// ConnectorStatus reads cloudConnectorStatus: the check passes when GitLab
// says success and ran no cloud probe; probes are the probe names.
func (c *Client) ConnectorStatus(ctx context.Context) (Check, []string, error) {
	var resp *gql.ConnectorStatusResponse
	err := c.call(ctx, true, func(ctx context.Context, g graphql.Client) (err error) {
		resp, err = gql.ConnectorStatus(ctx, g)
		return err
	})
	if err != nil {
		return Check{}, nil, fmt.Errorf("reading cloudConnectorStatus: %w", err)
	}
	ch := Check{Name: "cloudConnectorStatus"}
	st := resp.CloudConnectorStatus
	if st == nil {
		ch.Detail = "GitLab returned no status (licence or permission)"
		return ch, nil, nil
	}
	var names, failed, cloud []string
	for _, p := range st.ProbeResults {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		names = append(names, name)
		if p.Success == nil || !*p.Success {
			msg := name
			if p.Message != nil {
				msg += ": " + *p.Message
			}
			failed = append(failed, msg)
		}
		for _, cp := range cloudProbes {
			if name == cp {
				cloud = append(cloud, name)
			}
		}
	}
	ch.OK = st.Success != nil && *st.Success && len(cloud) == 0
	switch {
	case len(cloud) > 0:
		ch.Detail = "cloud probes ran (" + strings.Join(cloud, ", ") + "): some feature is on a GitLab-managed model"
	case len(failed) > 0:
		ch.Detail = "failed: " + strings.Join(failed, "; ")
	default:
		ch.Detail = "self-hosted probes passed: " + strings.Join(names, ", ")
	}
	return ch, names, nil
}
