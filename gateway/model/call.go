package model

import (
	"context"
	"net/http"

	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// Call says what a model call is for: the proxy writes it into the call's
// receipt (the user id only as a keyed hash). It travels as internal
// headers on the in-memory connection and never leaves the appliance: the
// proxy builds every upstream request from scratch.
type Call struct {
	Feature  string // Duo feature, route or flow
	Workflow string // Agent Platform workflow id
	Instance string // GitLab instance id
	User     string // GitLab global user id
}

type callKey struct{}

// WithCall returns ctx carrying c for the model calls made with it.
func WithCall(ctx context.Context, c Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// callHeader returns h plus the receipt headers of ctx's Call, if any (a
// copy: h is shared by all calls).
func callHeader(ctx context.Context, h http.Header) http.Header {
	c, ok := ctx.Value(callKey{}).(Call)
	if !ok {
		return h
	}
	h = h.Clone()
	for k, v := range map[string]string{receipts.HeaderFeature: c.Feature, receipts.HeaderWorkflow: c.Workflow,
		receipts.HeaderInstance: c.Instance, receipts.HeaderUser: c.User} {
		if v != "" {
			h.Set(k, v)
		}
	}
	return h
}
